"""Transport only: JSON-RPC 2.0 over HTTP(S) POST on /jsonrpc, one thread per request. The mapping of
agent errors to JSON-RPC errors happens here and nowhere else."""
from __future__ import annotations

import logging
import ssl
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from jsonrpcserver import Error, Success, dispatch

from vdsm_plugin import validation
from vdsm_plugin.errors import AgentError

log = logging.getLogger(__name__)

MAX_BODY = 4 * 1024 * 1024
Verb = Callable[..., dict[str, Any]]


def _adapt(name: str, verb: Verb) -> Callable[..., Any]:
    """Wrap a plain verb (context, **params) -> dict: check params against the contract, run it, and
    turn an AgentError into its coded JSON-RPC error."""

    def method(context: Any, **params: Any) -> Any:
        try:
            validation.check_params(name, params)
            return Success(verb(context, **params))
        except AgentError as e:
            err = e.to_jsonrpc()
            log.info("%s failed: %s", name, e)
            return Error(err["code"], err["message"], err["data"])
        except Exception as e:  # noqa: BLE001 - the agent must answer, and say it was unexpected
            log.exception("%s failed unexpectedly", name)
            err = AgentError("unexpected", f"{type(e).__name__}: {e}").to_jsonrpc()
            return Error(err["code"], err["message"], err["data"])

    method.__name__ = name
    return method


def jsonrpc_methods(verbs: dict[str, Verb]) -> dict[str, Callable[..., Any]]:
    return {name: _adapt(name, fn) for name, fn in verbs.items()}


class _Handler(BaseHTTPRequestHandler):
    server: "AgentServer"
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client waits ~40 ms for
    # the delayed ACK before it sees the body.
    disable_nagle_algorithm = True

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.client_address[0], *args)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") != "/jsonrpc":
            self._send(HTTPStatus.NOT_FOUND, b'{"error": "POST JSON-RPC requests to /jsonrpc"}')
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b'{"error": "request too large"}')
            return
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        answer = dispatch(body, methods=self.server.methods, context=self.server.context)
        self._send(HTTPStatus.OK, answer.encode("utf-8") if answer else b"")


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], context: Any, verbs: dict[str, Verb],
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(address, _Handler)
        self.context = context
        self.methods = jsonrpc_methods(verbs)
        if tls is not None:
            # The handshake runs in the request's thread (finish_request), so that a slow or
            # certificate-less client cannot hold up the accept loop.
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def finish_request(self, request, client_address) -> None:
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(30)
            request.do_handshake()
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        log.info("connection from %s failed", client_address[0], exc_info=True)


def tls_context(cert: str, key: str, ca: str | None) -> ssl.SSLContext:
    """Server TLS; with a CA, clients must present a certificate it signed (mutual TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if ca:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def serve(agent: Any, verbs: dict[str, Verb]) -> AgentServer:
    cfg = agent.config
    tls = tls_context(str(cfg.tls_cert), str(cfg.tls_key), str(cfg.tls_ca) if cfg.tls_ca else None) if cfg.tls else None
    return AgentServer((cfg.listen_host, cfg.listen_port), agent, verbs, tls)
