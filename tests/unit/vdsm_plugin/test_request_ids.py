"""The agent's side of request ids: the engine's X-Request-Id is on every record the call logs and
echoed in the answer; an id that is not sane is dropped, never logged."""
from __future__ import annotations

import http.client
import json
import logging
import threading

import pytest

from vdsm_plugin import requestid, server

verb_log = logging.getLogger("tests.agent_verb")


def _ping(ctx):
    verb_log.info("pinged")
    return {"pong": True}


@pytest.fixture
def port():
    srv = server.AgentServer(("127.0.0.1", 0), None, {"Host.ping": _ping})
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def records(caplog):
    caplog.handler.addFilter(requestid.Filter())
    caplog.set_level(logging.INFO)
    return caplog


def post(port: int, headers: dict[str, str], *, content_type: str = "application/json"):
    body = json.dumps({"jsonrpc": "2.0", "method": "Host.ping", "params": {}, "id": 1}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/jsonrpc", body, {"Content-Type": content_type, **headers})
        resp = conn.getresponse()
        resp.read()
        return resp
    finally:
        conn.close()


def ids_of(caplog, name: str) -> list[object]:
    return [getattr(r, "request_id", None) for r in caplog.records if r.name == name]


def test_the_engines_id_is_on_the_calls_records_and_echoed(port, records):
    resp = post(port, {"X-Request-Id": "req-9f8e"})
    assert resp.status == 200 and resp.getheader("X-Request-Id") == "req-9f8e"
    assert ids_of(records, "tests.agent_verb") == ["req-9f8e"]
    assert requestid.current() is None      # the test's thread never had one


def test_a_refused_request_is_logged_with_its_id(port, records):
    resp = post(port, {"X-Request-Id": "req-refused"}, content_type="text/plain")
    assert resp.status == 415 and resp.getheader("X-Request-Id") == "req-refused"
    assert ids_of(records, "vdsm_plugin.server") == ["req-refused"]


@pytest.mark.parametrize("bad", ["x" * 129, "a b", "<id>", ""])
def test_an_id_that_is_not_sane_is_dropped(port, records, bad):
    resp = post(port, {"X-Request-Id": bad})
    assert resp.status == 200 and resp.getheader("X-Request-Id") is None
    assert ids_of(records, "tests.agent_verb") == [None]


def test_the_next_call_on_the_connection_does_not_inherit_the_id(port, records):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    body = json.dumps({"jsonrpc": "2.0", "method": "Host.ping", "params": {}, "id": 1}).encode()
    try:
        for headers in ({"X-Request-Id": "first"}, {}):
            conn.request("POST", "/jsonrpc", body, {"Content-Type": "application/json", **headers})
            conn.getresponse().read()
    finally:
        conn.close()
    assert ids_of(records, "tests.agent_verb") == ["first", None]
