"""The agent's transport: JSON-RPC framing, the one error mapping, and mutual TLS."""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from vdsm_plugin import config, server
from vdsm_plugin.errors import AgentError


def _ping(ctx):
    return {"pong": True}


def _boom(ctx):
    raise RuntimeError("disk on fire")


def _refuse(ctx):
    raise AgentError("noVM", "no VM with id x", vmId="x")


VERBS = {"Host.ping": _ping, "Host.getCapabilities": _boom, "VM.list": _refuse}


def _start(tls=None, **limits):
    srv = server.AgentServer(("127.0.0.1", 0), None, VERBS, tls, **limits)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


@pytest.fixture
def url():
    srv = _start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/jsonrpc"
    srv.shutdown()
    srv.server_close()


def post(url, body: bytes, *, ca=None, cert=None) -> tuple[int, object]:
    """POST with the standard library (the agent's tier needs no HTTP client package). `ca`: the CA
    file that signed the server (None: the system's CAs); `cert`: (certificate, key) of the client."""
    u = urlsplit(url)
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=ca)
        if cert:
            ctx.load_cert_chain(*cert)
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=5, context=ctx)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    try:
        conn.request("POST", u.path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def call(url, method, params=None, **kw):
    body = {"jsonrpc": "2.0", "method": method, "id": 7}
    if params is not None:
        body["params"] = params
    return post(url, json.dumps(body).encode(), **kw)[1]


def test_success(url):
    assert call(url, "Host.ping", {}) == {"jsonrpc": "2.0", "result": {"pong": True}, "id": 7}


def test_agent_error_keeps_its_code_and_data(url):
    err = call(url, "VM.list", {})["error"]
    assert err["code"] == 1 and err["data"]["name"] == "noVM" and err["data"]["vmId"] == "x"


def test_unexpected_exception_is_code_16_without_a_traceback(url):
    err = call(url, "Host.getCapabilities", {})["error"]
    assert err["code"] == 16 and "disk on fire" in err["message"] and "Traceback" not in str(err)


def test_params_are_checked_against_the_schema(url):
    err = call(url, "Host.ping", {"surprise": 1})["error"]
    assert err["code"] == -32602


def test_unknown_method_and_bad_json(url):
    assert call(url, "VM.explode", {})["error"]["code"] == -32601
    _, bad = post(url, b"{not json")
    assert bad["error"]["code"] == -32700


def test_wrong_path_is_404(url):
    assert post(url.replace("/jsonrpc", "/rpc"), b"{}")[0] == 404


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from plugboard import pki as pki_mod
    return pki_mod.init(tmp_path_factory.mktemp("pki"), ["127.0.0.1", "localhost"]).dir


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory):
    """A second CA with its own engine certificate: the agent must not take it."""
    from plugboard import pki as pki_mod
    return pki_mod.init(tmp_path_factory.mktemp("other-pki"), ["127.0.0.1"]).dir


def test_mutual_tls(pki: Path, other_pki: Path):
    ctx = server.tls_context(str(pki / "agent.pem"), str(pki / "agent.key"), str(pki / "ca.pem"))
    srv = _start(ctx)
    url = f"https://127.0.0.1:{srv.server_address[1]}/jsonrpc"
    ca, engine = str(pki / "ca.pem"), (str(pki / "engine.pem"), str(pki / "engine.key"))
    # A refused handshake surfaces as an SSL error, or (TLS 1.3: the server's alert comes after the
    # client's side of the handshake) as a reset connection.
    refused = (ssl.SSLError, ConnectionError)
    try:
        ok = call(url, "Host.ping", {}, ca=ca, cert=engine)
        assert ok["result"] == {"pong": True}
        with pytest.raises(refused):
            call(url, "Host.ping", {}, ca=ca)                      # no client certificate
        with pytest.raises(ssl.SSLCertVerificationError):
            call(url, "Host.ping", {}, cert=engine)                # the system's CAs do not know the agent
        foreign = (str(other_pki / "engine.pem"), str(other_pki / "engine.key"))
        with pytest.raises(refused):
            call(url, "Host.ping", {}, ca=ca, cert=foreign)        # a client certificate of another CA
        # The refused clients did not take the server down.
        again = call(url, "Host.ping", {}, ca=ca, cert=engine)
        assert again["result"] == {"pong": True}
    finally:
        srv.shutdown()
        srv.server_close()


# ---- what the transport refuses before any verb runs ---------------------------------------------

def raw(url: str, data: bytes, *, timeout: float = 5) -> bytes:
    """Send bytes as they are and read until the server closes the connection (or the timeout)."""
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def status_and_error(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(body)["error"] if body.strip() else {}


PING = json.dumps({"jsonrpc": "2.0", "method": "Host.ping", "id": 1}).encode()


def request(path="/jsonrpc", headers=None, body=PING, length: object = "auto") -> bytes:
    hdrs = {"Host": "127.0.0.1", "Content-Type": "application/json", **(headers or {})}
    if length == "auto":
        hdrs["Content-Length"] = str(len(body))
    elif length is not None:
        hdrs["Content-Length"] = str(length)
    lines = [f"POST {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in hdrs.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize("headers, status, reason", [
    ({"Origin": "http://evil.example"}, 403, "origin"),
    ({"Origin": "null"}, 403, "origin"),
    ({"Content-Type": "text/plain"}, 415, "contentType"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "contentType"),
    ({"Content-Type": None}, 415, "contentType"),
])
def test_browser_requests_are_refused(url, headers, status, reason):
    """A web page can POST text/plain cross-origin without a preflight; the agent must not run it."""
    got, err = status_and_error(raw(url, request(headers=headers)))
    assert (got, err["code"], err["data"]["reason"]) == (status, -32600, reason)


def test_json_with_a_charset_is_accepted(url):
    answer = raw(url, request(headers={"Content-Type": "application/json; charset=utf-8",
                                       "Connection": "close"}))
    assert b"200 OK" in answer.split(b"\r\n")[0] and b'"pong": true' in answer


@pytest.mark.parametrize("length, status", [("-1", 400), ("abc", 400), ("+5", 400), ("1e3", 400),
                                            (str(server.MAX_BODY + 1), 413), (None, 411)])
def test_content_length_must_be_a_non_negative_integer_within_the_limit(url, length, status):
    got, err = status_and_error(raw(url, request(length=length)))
    assert got == status and err["code"] == -32600


def test_chunked_bodies_are_refused(url):
    got, _ = status_and_error(raw(url, request(headers={"Transfer-Encoding": "chunked"}, length=None,
                                               body=b"5\r\nhello\r\n0\r\n\r\n")))
    assert got == 411


def test_a_short_body_is_answered_when_its_deadline_passes():
    srv = _start(body_timeout=0.5)
    url = f"http://127.0.0.1:{srv.server_address[1]}/jsonrpc"
    try:
        started = time.monotonic()
        got, err = status_and_error(raw(url, request(length=len(PING) + 100)))
        assert got == 408 and err["data"]["reason"] == "bodyTimeout"
        assert time.monotonic() - started < 3
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_trickled_body_does_not_outlive_its_deadline():
    """One byte every 0.2 s never trips a per-read timeout; the deadline is for the whole body."""
    srv = _start(body_timeout=1.0, idle_timeout=5)
    u = ("127.0.0.1", srv.server_address[1])
    try:
        with socket.create_connection(u, timeout=5) as s:
            s.sendall(request(length=1000, body=b""))
            started = time.monotonic()
            answer = b""
            while time.monotonic() - started < 4:
                try:
                    s.sendall(b" ")
                except OSError:
                    break
                s.settimeout(0.2)
                try:
                    answer += s.recv(4096)
                    if answer:
                        break
                except TimeoutError:
                    pass
            assert b" 408 " in answer.split(b"\r\n")[0]
            assert time.monotonic() - started < 2.5
    finally:
        srv.shutdown()
        srv.server_close()


def test_idle_keep_alive_connections_are_closed():
    srv = _start(idle_timeout=0.5)
    try:
        with socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=5) as s:
            s.sendall(request())
            time.sleep(0.1)
            assert b"200 OK" in s.recv(65536)
            started = time.monotonic()
            assert s.recv(1) == b""          # the server closed the idle connection
            assert 0.3 < time.monotonic() - started < 3
    finally:
        srv.shutdown()
        srv.server_close()


def test_connections_beyond_the_pool_are_refused_with_503():
    srv = _start(max_connections=2, idle_timeout=5)
    port = srv.server_address[1]
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    try:
        for s in held:  # each is served (and held open by keep-alive)
            s.sendall(request())
            assert b"200 OK" in s.recv(65536)
        got, err = status_and_error(raw(f"http://127.0.0.1:{port}/jsonrpc", request()))
        assert got == 503 and err["data"]["reason"] == "busy"
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:   # the freed worker takes the next connection
            answer = raw(f"http://127.0.0.1:{port}/jsonrpc", request(headers={"Connection": "close"}))
            if b"200 OK" in answer or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert b"200 OK" in answer
    finally:
        for s in held:
            s.close()
        srv.shutdown()
        srv.server_close()


def test_backlog_fits_a_busy_engine():
    assert server.AgentServer.request_queue_size >= 128


def test_other_methods_are_refused(url):
    answer = raw(url, b"GET /jsonrpc HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_and_error(answer)[0] == 405


# ---- what the agent refuses to start with ----------------------------------------------------------

def _cfg(tmp_path, text: str):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return config.load(path)


@pytest.mark.parametrize("text, problem", [
    ('[agent]\nlisten = "127.0.0.1:0"\n', "mutual TLS"),
    ('[agent]\nlisten = "0.0.0.0:0"\ninsecure_dev_http = true\n', "loopback"),
    ('[agent]\nlisten = "10.1.2.3:0"\ninsecure_dev_http = true\n', "loopback"),
])
def test_plain_http_needs_the_dev_flag_and_loopback(tmp_path, text, problem):
    with pytest.raises(server.StartupError, match=problem):
        server.transport(_cfg(tmp_path, text))


def test_dev_http_on_loopback_is_allowed(tmp_path):
    for host in ("127.0.0.1", "[::1]", "localhost"):
        assert server.transport(_cfg(tmp_path, f'[agent]\nlisten = "{host}:0"\ninsecure_dev_http = true\n')) is None


def test_tls_without_a_ca_is_refused(tmp_path, pki):
    text = f'[tls]\ncert = "{pki / "agent.pem"}"\nkey = "{pki / "agent.key"}"\n'
    with pytest.raises(server.StartupError, match="ca"):
        server.transport(_cfg(tmp_path, text))


def test_tls_with_a_ca_listens_anywhere(tmp_path, pki):
    text = (f'[agent]\nlisten = "0.0.0.0:0"\n[tls]\ncert = "{pki / "agent.pem"}"\nkey = "{pki / "agent.key"}"\n'
            f'ca = "{pki / "ca.pem"}"\n')
    assert isinstance(server.transport(_cfg(tmp_path, text)), ssl.SSLContext)


def test_the_cli_refuses_to_start_without_tls(capsys):
    from plugboard import cli
    assert cli.main(["agent", "serve", "--listen", "0.0.0.0:0", "--insecure-dev-http"]) == 2
    assert "loopback" in capsys.readouterr().err
