"""The agent's transport: JSON-RPC framing, the one error mapping, and mutual TLS."""
from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from vdsm_plugin import server
from vdsm_plugin.errors import AgentError


def _ping(ctx):
    return {"pong": True}


def _boom(ctx):
    raise RuntimeError("disk on fire")


def _refuse(ctx):
    raise AgentError("noVM", "no VM with id x", vmId="x")


VERBS = {"Host.ping": _ping, "Host.getCapabilities": _boom, "VM.list": _refuse}


def _start(tls=None):
    srv = server.AgentServer(("127.0.0.1", 0), None, VERBS, tls)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
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
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make the test certificates")
    d = tmp_path_factory.mktemp("pki")

    def ossl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
         "-keyout", "ca.key", "-out", "ca.pem")
    for name in ("agent", "engine"):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", f"{name}.key",
             "-out", f"{name}.csr")
        (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "1", "-extfile", "san.ext", "-out", f"{name}.pem")
    return d


def test_mutual_tls(pki: Path):
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
        # The refused clients did not take the server down.
        again = call(url, "Host.ping", {}, ca=ca, cert=engine)
        assert again["result"] == {"pong": True}
    finally:
        srv.shutdown()
        srv.server_close()
