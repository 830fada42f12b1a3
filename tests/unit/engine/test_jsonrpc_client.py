"""JsonRpcHostClient against a small real JSON-RPC server on 127.0.0.1 (stdlib http.server in a thread)
answering canned results and errors, sleeping, or speaking something that is not JSON-RPC."""
from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.config import EngineConfig, TlsSettings
from engine.dao.models import Host
from engine.errors import HostCallFailed, HostUnreachable
from engine import jsonrpc_client
from engine.jsonrpc_client import JsonRpcHostClient, client_factory


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "CannedServer"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append({"body": body, "peer": self.client_address, "path": self.path})
        behaviour = self.server.canned.get(body["method"], ("result", {}))
        kind = behaviour[0]
        if kind == "sleep":
            time.sleep(behaviour[1])
            kind, behaviour = "result", ("result", {"slept": behaviour[1]})
        if kind == "result":
            answer = {"jsonrpc": "2.0", "result": behaviour[1], "id": body["id"]}
        elif kind == "error":
            answer = {"jsonrpc": "2.0", "error": behaviour[1], "id": body["id"]}
        elif kind == "raw":
            self._send(behaviour[1], behaviour[2].encode(), behaviour[3] if len(behaviour) > 3 else "text/html")
            return
        elif kind == "wrong_id":
            answer = {"jsonrpc": "2.0", "result": {}, "id": body["id"] + 1000}
        else:
            raise AssertionError(kind)
        self._send(200, json.dumps(answer).encode())


class CannedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.canned: dict[str, tuple] = {}
        self.seen: list[dict[str, Any]] = []
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}/jsonrpc"


def _serve(server: CannedServer):
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server


@pytest.fixture
def server():
    srv = _serve(CannedServer())
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def client(server):
    with JsonRpcHostClient("h1", server.url, timeout=5, connect_timeout=2) as c:
        yield c


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/jsonrpc"


# ---- results --------------------------------------------------------------------------------------

def test_result_and_named_params(server, client):
    server.canned["VM.getDevices"] = ("result", {"vmId": "x", "devices": []})
    assert client.call("VM.getDevices", {"vmId": "x"}) == {"vmId": "x", "devices": []}
    sent = server.seen[-1]["body"]
    assert sent["jsonrpc"] == "2.0" and sent["method"] == "VM.getDevices"
    assert sent["params"] == {"vmId": "x"}
    assert server.seen[-1]["path"] == "/jsonrpc"


def test_no_params_and_null_result(server, client):
    server.canned["Host.ping"] = ("result", None)
    assert client.call("Host.ping") == {}
    assert "params" not in server.seen[-1]["body"] or server.seen[-1]["body"]["params"] in ({}, [])


def test_connection_is_kept_alive(server, client):
    server.canned["Host.ping"] = ("result", {"pong": True})
    for _ in range(3):
        assert client.call("Host.ping") == {"pong": True}
    peers = {seen["peer"] for seen in server.seen}
    assert len(peers) == 1
    ids = [seen["body"]["id"] for seen in server.seen]
    assert len(set(ids)) == 3


# ---- coded errors ---------------------------------------------------------------------------------

def test_jsonrpc_error_becomes_host_call_failed(server, client):
    server.canned["VM.hotplugNic"] = ("error", {
        "code": 49, "message": "Failed to hotplug NIC: No more available PCI slots",
        "data": {"name": "hotplugNic", "detail": "No more available PCI slots", "alias": "ua-1"}})
    with pytest.raises(HostCallFailed) as e:
        client.call("VM.hotplugNic", {"vmId": "x", "nic": {}})
    err = e.value
    assert err.host == "h1"
    assert err.host_code == 49
    assert err.host_message == "Failed to hotplug NIC: No more available PCI slots"
    assert err.host_error_name == "hotplugNic"
    assert err.host_data["alias"] == "ua-1"
    assert "hotplugNic" in err.message and "h1" in err.message
    assert err.to_dict()["host"] == {"name": "h1", "code": 49,
                                     "message": "Failed to hotplug NIC: No more available PCI slots"}


def test_detail_is_appended_when_the_message_lacks_it(server, client):
    server.canned["VM.getDevices"] = ("error", {"code": 1, "message": "Virtual machine does not exist",
                                                "data": {"name": "noVM", "detail": "no VM abc"}})
    with pytest.raises(HostCallFailed) as e:
        client.call("VM.getDevices", {"vmId": "abc"})
    assert e.value.host_code == 1
    assert e.value.host_message == "Virtual machine does not exist: no VM abc"
    assert e.value.host_error_name == "noVM"


def test_error_without_data(server, client):
    server.canned["Nope"] = ("error", {"code": -32601, "message": "Method not found"})
    with pytest.raises(HostCallFailed) as e:
        client.call("Nope")
    assert (e.value.host_code, e.value.host_message, e.value.host_error_name) == (-32601, "Method not found", None)


# ---- unreachable ----------------------------------------------------------------------------------

def test_connection_refused():
    url = closed_port_url()
    with JsonRpcHostClient("h2", url, timeout=2, connect_timeout=1) as c:
        with pytest.raises(HostUnreachable) as e:
            c.call("Host.ping")
    assert e.value.host == "h2"
    assert e.value.message.startswith(f"host h2 ({url}) is unreachable: connection failed")
    assert e.value.status == 503
    assert e.value.outcome_unknown is False      # nothing reached the agent


def test_unknown_host_name():
    with JsonRpcHostClient("h3", "http://no-such-host.invalid:54321/jsonrpc", timeout=2, connect_timeout=1) as c:
        with pytest.raises(HostUnreachable, match="h3 .* is unreachable: connection failed") as e:
            c.call("Host.ping")
    assert e.value.outcome_unknown is False


def test_read_timeout(server):
    server.canned["Host.ping"] = ("sleep", 1.0)
    with JsonRpcHostClient("h1", server.url, timeout=0.2, connect_timeout=1) as c:
        started = time.monotonic()
        with pytest.raises(HostUnreachable, match=r"no answer to Host.ping within 0.2 s") as e:
            c.call("Host.ping")
        assert time.monotonic() - started < 0.9
    assert e.value.outcome_unknown is True           # the agent may have acted


def test_per_call_timeout_override(server):
    server.canned["VM.hotunplugNic"] = ("sleep", 0.4)
    with JsonRpcHostClient("h1", server.url, timeout=0.1, connect_timeout=1) as c:
        assert c.call("VM.hotunplugNic", {"vmId": "x"}, timeout=2) == {"slept": 0.4}
        with pytest.raises(HostUnreachable):
            c.call("VM.hotunplugNic", {"vmId": "x"}, timeout=0.1)


def test_long_poll_gets_its_wait_plus_a_margin(server):
    server.canned["Host.getEvents"] = ("sleep", 0.4)
    with JsonRpcHostClient("h1", server.url, timeout=0.1, connect_timeout=1) as c:
        assert c.read_timeout("Host.getEvents", {"after": 0, "timeout": 10}, None) == 15
        assert c.read_timeout("Host.ping", {"timeout": 10}, None) == 0.1
        assert c.call("Host.getEvents", {"after": 0, "timeout": 0.3}) == {"slept": 0.4}


@pytest.mark.parametrize("raw, match", [
    (("raw", 500, "<html>boom</html>"), "HTTP 500"),
    (("raw", 404, ""), "HTTP 404"),
    (("raw", 200, "<html>hello</html>"), "not JSON"),
    (("raw", 200, '{"hello": 1}', "application/json"), "not a JSON-RPC response"),
    (("raw", 200, '[1, 2]', "application/json"), "not a JSON-RPC response|does not match"),
    (("wrong_id",), "does not match the request"),
    (("result", [1, 2]), "not an object"),
])
def test_garbage_answers_are_unreachable(server, client, raw, match):
    server.canned["Host.ping"] = raw
    with pytest.raises(HostUnreachable, match=match) as e:
        client.call("Host.ping")
    assert e.value.host == "h1"


SECRET = "db_password=hunter2"


@pytest.mark.parametrize("raw", [
    ("raw", 500, f"<html>{SECRET}</html>"),
    ("raw", 403, SECRET, "text/plain"),
    ("raw", 200, f"<html>{SECRET}</html>"),
    ("raw", 200, json.dumps({"config": SECRET}), "application/json"),
    ("raw", 200, json.dumps([SECRET]), "application/json"),
    ("result", [SECRET]),
])
def test_a_fault_never_quotes_what_a_non_agent_answered(server, client, raw):
    """SSRF: a host URL pointing at another service must not carry that service's content back."""
    server.canned["Host.getCapabilities"] = raw
    with pytest.raises(HostUnreachable) as e:
        client.call("Host.getCapabilities")
    assert "hunter2" not in str(e.value) and "hunter2" not in repr(vars(e.value))


def test_an_answer_larger_than_the_limit_is_refused_unread(server, client, monkeypatch):
    monkeypatch.setattr(jsonrpc_client, "MAX_ANSWER_BYTES", 1000)
    server.canned["Host.ping"] = ("result", {"pad": "x" * 5000})
    with pytest.raises(HostUnreachable, match="larger than 1000 bytes"):
        client.call("Host.ping")
    server.canned["Host.ping"] = ("result", {"ok": 1})
    assert client.call("Host.ping") == {"ok": 1}      # the connection was dropped, the client still works


def test_a_long_agent_message_is_cut(server, client):
    server.canned["Host.ping"] = ("error", {"code": 16, "message": "m" * 10_000})
    with pytest.raises(HostCallFailed) as e:
        client.call("Host.ping")
    assert len(e.value.host_message or "") == jsonrpc_client.MAX_HOST_MESSAGE


# ---- factory --------------------------------------------------------------------------------------

def test_factory_caches_one_client_per_host():
    factory = client_factory(EngineConfig(host_timeout=7, host_connect_timeout=3))
    a = Host(id="1", name="a", url="http://127.0.0.1:1/jsonrpc")
    b = Host(id="2", name="b", url="http://127.0.0.1:2/jsonrpc")
    ca = factory(a)
    assert factory(a) is ca
    assert factory(Host(id="1", name="a", url=a.url)) is ca       # same host, another row object
    assert factory(b) is not ca
    assert (ca.timeout, ca.connect_timeout, ca.name) == (7, 3, "a")
    moved = factory(Host(id="1", name="a", url="http://127.0.0.1:3/jsonrpc"))
    assert moved is not ca and moved.url.endswith(":3/jsonrpc")
    factory.close()


# ---- TLS ------------------------------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=Plugboard test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("agent", "engine"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


def _tls_server(pki: Path, *, require_client_cert: bool) -> CannedServer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "agent.pem", pki / "agent.key")
    if require_client_cert:
        ctx.load_verify_locations(pki / "ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
    srv = _serve(CannedServer(ctx))
    srv.canned["Host.ping"] = ("result", {"pong": True})
    return srv


@pytest.fixture
def tls_server(pki):
    srv = _tls_server(pki, require_client_cert=False)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def mtls_server(pki):
    srv = _tls_server(pki, require_client_cert=True)
    yield srv
    srv.shutdown()
    srv.server_close()


def test_tls_with_ca_bundle(tls_server, pki):
    with JsonRpcHostClient("h1", tls_server.url, timeout=5, tls=TlsSettings(ca_file=pki / "ca.pem")) as c:
        assert c.call("Host.ping") == {"pong": True}


def test_tls_unknown_ca_is_unreachable(tls_server):
    with JsonRpcHostClient("h1", tls_server.url, timeout=5) as c:
        with pytest.raises(HostUnreachable, match="is unreachable: TLS error"):
            c.call("Host.ping")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_verification_off(tls_server):
    with JsonRpcHostClient("h1", tls_server.url, timeout=5, tls=TlsSettings(verify=False)) as c:
        assert c.call("Host.ping") == {"pong": True}


def test_mutual_tls(mtls_server, pki):
    settings = TlsSettings(ca_file=pki / "ca.pem", cert_file=pki / "engine.pem", key_file=pki / "engine.key")
    with JsonRpcHostClient("h1", mtls_server.url, timeout=5, tls=settings) as c:
        assert c.call("Host.ping") == {"pong": True}


def test_mutual_tls_without_client_certificate(mtls_server, pki):
    with JsonRpcHostClient("h1", mtls_server.url, timeout=5, tls=TlsSettings(ca_file=pki / "ca.pem")) as c:
        with pytest.raises(HostUnreachable, match="h1 .* is unreachable"):
            c.call("Host.ping")
