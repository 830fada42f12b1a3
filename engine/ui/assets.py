"""The browser assets: htmx and PatternFly's CSS from node_modules (installed by `npm ci` from the
repository's package.json and package-lock.json; never copied into the repository), and the UI's own
small script and style sheet. Nothing is built: the files are served as the packages ship them."""
from __future__ import annotations

import os
from pathlib import Path

from flask import Blueprint, abort, current_app, send_from_directory
from werkzeug.wrappers import Response

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: Only these package folders are served, not the whole of node_modules.
PACKAGES = ("htmx.org/dist/", "@patternfly/patternfly/")
MAX_AGE = 3600


def node_modules() -> Path:
    """$PLUGBOARD_UI_ASSETS or the app's UI_ASSETS_DIR, else the repository's node_modules."""
    configured = current_app.config.get("UI_ASSETS_DIR") or os.environ.get("PLUGBOARD_UI_ASSETS")
    return Path(configured) if configured else ROOT / "node_modules"


def vendor(filename: str) -> Response:
    if not filename.startswith(PACKAGES):
        abort(404)
    return send_from_directory(node_modules(), filename, max_age=MAX_AGE)


def own(filename: str) -> Response:
    return send_from_directory(HERE / "static", filename, max_age=MAX_AGE)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/assets/vendor/<path:filename>", "vendor", vendor)
    bp.add_url_rule("/assets/ui/<path:filename>", "own", own)


ENDPOINTS = ("vendor", "own")
