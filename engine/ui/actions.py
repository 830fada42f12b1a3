"""The answer to an action taken in the UI: an alert where the action was taken (the tab's alert area,
or the open dialog's), and an `pb-refresh` event so the live regions show the result at once. A refusal
is raised as the command raised it and rendered by engine.ui.errors with every reason."""
from __future__ import annotations

from flask import make_response, render_template, request
from werkzeug.wrappers import Response

DIALOG_ALERTS = "pb-dialog-alerts"


def done(message: str, *, note: str | None = None) -> Response:
    """The action went through: a success alert (`note`: e.g. that it applies at the VM's next start).
    From a dialog, the alert goes to the page (out of band) and the dialog is closed by ui.js."""
    in_dialog = request.headers.get("HX-Target") == DIALOG_ALERTS
    resp = make_response(render_template("_done.html", message=message, note=note, in_dialog=in_dialog))
    resp.headers["HX-Trigger"] = "pb-refresh, pb-done"
    resp.headers["X-PB-Outcome"] = "ok"
    return resp
