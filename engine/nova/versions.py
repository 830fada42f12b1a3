"""Nova's version documents (GET /, /v2, /v2.1) and its microversion headers.

The facade speaks microversion 2.1 only (the base of /v2.1; /v3 answers the same way): a request
may ask for it with `OpenStack-API-Version: compute 2.1` or `X-OpenStack-Nova-API-Version: 2.1`, or
for `latest`; any other version is refused with 406 as Nova refuses one outside its range, and a
malformed one with 400. Answers on /v2.1 and /v3 carry both headers. /v2 is Nova's legacy v2 API:
no microversions, no headers.
"""
from __future__ import annotations

import re
from typing import Any

from flask import Response, g, request
from werkzeug.exceptions import NotAcceptable

from engine.errors import BadRequest

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 1)
HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"
SERVICE = "compute"
VERSION_RE = re.compile(r"^([1-9][0-9]*)\.([1-9][0-9]*|0)\Z")
MEDIA_TYPE = "application/vnd.openstack.compute+json"


def _text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _v2(root: str) -> dict[str, Any]:
    return {"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": "",
            "updated": "2011-01-21T11:33:21Z", "links": [{"rel": "self", "href": f"{root}v2/"}]}


def _v21(root: str) -> dict[str, Any]:
    return {"id": "v2.1", "status": "CURRENT", "version": _text(MAX_VERSION), "min_version": _text(MIN_VERSION),
            "updated": "2013-07-23T11:33:21Z", "links": [{"rel": "self", "href": f"{root}v2.1/"}]}


def _detailed(doc: dict[str, Any], major: str) -> dict[str, Any]:
    """One version's own document, with its media type and documentation link, as Nova gives it."""
    doc = dict(doc)
    doc["links"] = doc["links"] + [{"rel": "describedby", "type": "text/html",
                                    "href": "https://docs.openstack.org/"}]
    doc["media-types"] = [{"base": "application/json", "type": f"{MEDIA_TYPE};version={major}"}]
    return {"version": doc}


def versions() -> dict[str, Any]:
    """GET /: every version the facade answers."""
    return {"versions": [_v2(request.url_root), _v21(request.url_root)]}


def v2() -> dict[str, Any]:
    return _detailed(_v2(request.url_root), "2")


def v21() -> dict[str, Any]:
    return _detailed(_v21(request.url_root), "2.1")


# ---- microversion negotiation --------------------------------------------------------------------

def _asked() -> str | None:
    """The version the request asks for: OpenStack-API-Version's compute entry (the last one, when
    several are given, as microversion-parse reads them), else the legacy header's last value, else
    None."""
    for entry in reversed(request.headers.get(HEADER, "").split(",")):
        service, _, version = entry.strip().partition(" ")
        if service.lower() == SERVICE and version.strip():
            return version.strip()
    legacy = request.headers.get(LEGACY_HEADER, "").split(",")[-1].strip()
    return legacy or None


def negotiate() -> None:
    """before_request of the versioned mounts: settle the microversion (g.nova_version)."""
    asked = _asked()
    if asked is None:
        g.nova_version = MIN_VERSION
        return
    if asked == "latest":           # Nova's spelling alone: "LATEST" is a malformed version
        g.nova_version = MAX_VERSION
        return
    match = VERSION_RE.match(asked)
    if match is None:
        raise BadRequest(f"API Version String {asked} is of invalid format. Must be of format MajorNum.MinorNum.")
    version = (int(match.group(1)), int(match.group(2)))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise NotAcceptable(f"Version {asked} is not supported by the API. Minimum is {_text(MIN_VERSION)} and "
                            f"maximum is {_text(MAX_VERSION)}.")
    g.nova_version = version


def stamp(response: Response) -> Response:
    """after_request of the versioned mounts: say which microversion answered."""
    version = g.get("nova_version")
    if version is not None:
        response.headers[HEADER] = f"{SERVICE} {_text(version)}"
        response.headers[LEGACY_HEADER] = _text(version)
        response.vary.add(HEADER)
        response.vary.add(LEGACY_HEADER)
    return response
