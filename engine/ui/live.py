"""Live regions: a part of a page that htmx polls (hx-trigger "every ...") and swaps in place.

Polling, not server-sent events: the engine runs under werkzeug's threaded server, where an event
stream holds one thread per open tab for as long as it stays open, and the monitor writes its changes
to the database rather than to an in-process bus, so a stream would poll the database anyway. A poll
costs one short request; it asks every second while something is in flight (a plug, an unplug, a VM
powering up or down) and every few seconds otherwise. The region's digest travels with each poll: an
unchanged region answers 204 and htmx leaves the page (and the keyboard focus) alone."""
from __future__ import annotations

import hashlib
import time

from flask import render_template, request
from markupsafe import Markup
from werkzeug.wrappers import Response

BUSY_EVERY = "1s"
IDLE_EVERY = "4s"


def region(region_id: str, url: str, inner: str, *, busy: bool, include: str | None = None) -> Response | str:
    digest = hashlib.sha256(inner.encode()).hexdigest()[:20]
    if request.headers.get("HX-Request") and request.args.get("v") == digest:
        return Response(status=204)
    return Markup(render_template("_live.html", region_id=region_id, url=url, inner=Markup(inner), digest=digest,
                           every=BUSY_EVERY if busy else IDLE_EVERY, include=include, now=time.time()))
