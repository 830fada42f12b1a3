"""Transport only: JSON-RPC 2.0 over HTTPS (mutual TLS) POST on /jsonrpc. The mapping of agent errors
to JSON-RPC errors happens here and nowhere else.

What a connection gets (the agent runs as root: everything that reaches it is hostile until proven
otherwise):
- TLS with a client certificate the configured CA signed; plain HTTP only with `insecure_dev_http`
  and only on a loopback address (`serve` refuses to start otherwise).
- A bounded worker pool: at most `max_connections` connections are served at once; one more is
  answered 503 (plain HTTP) or closed (TLS: no handshake is spent on it) by the accept loop.
- Idle keep-alive connections are closed after `idle_timeout`; the request body must arrive whole
  within `body_timeout`.
- Refused before the body is read, with an HTTP 4xx status and a JSON-RPC error `invalidRequest`
  (-32600) naming the reason: a request carrying `Origin` (a browser: cross-origin requests must
  never reach the verbs), a content type other than application/json, a Content-Length that is
  missing or not a non-negative integer, a body over MAX_BODY, chunked bodies.

The standard library's http.server is kept: the agent's JSON-RPC surface is one POST route, and the
few limits it lacks (bounded pool, body deadline, header checks) are a few lines here, while every
well-kept alternative (an ASGI server, twisted) would be a large dependency on every host.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable

from jsonrpcserver import Error, Success, dispatch

from vdsm_plugin import requestid, validation
from vdsm_plugin.errors import AgentError

log = logging.getLogger(__name__)

MAX_BODY = 4 * 1024 * 1024
LISTEN_BACKLOG = 128
HANDSHAKE_TIMEOUT = 10.0
MEDIA_TYPE = "application/json"
Verb = Callable[..., dict[str, Any]]


class StartupError(RuntimeError):
    """The agent refuses to listen as configured; the message says why and what to change."""


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


_REQUEST_KEYS = frozenset({"jsonrpc", "method", "params", "id"})


def request_shape(request: Any) -> None:
    """jsonrpcserver's request schema (one request, or a non-empty batch of them), checked by hand:
    its jsonschema validation took 0.17 ms of every call. Raises ValueError, which jsonrpcserver
    answers with an invalid-request error."""
    for one in request if isinstance(request, list) and request else [request]:
        if not (isinstance(one, dict) and one.keys() <= _REQUEST_KEYS and one.get("jsonrpc") == "2.0"
                and isinstance(one.get("method"), str)
                and isinstance(one.get("params", []), (list, dict))
                and (one.get("id") is None or (isinstance(one["id"], (str, int, float))
                                               and not isinstance(one["id"], bool)))):
            raise ValueError("not a JSON-RPC 2.0 request")


class Refused(Exception):
    """A request refused by the transport, before any verb runs: an HTTP status and the reason."""

    def __init__(self, status: HTTPStatus, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = AgentError("invalidRequest", detail, reason=reason)

    def body(self) -> bytes:
        return json.dumps({"jsonrpc": "2.0", "error": self.error.to_jsonrpc(), "id": None}).encode("utf-8")


def _content_length(value: str | None) -> int:
    if value is None:
        raise Refused(HTTPStatus.LENGTH_REQUIRED, "contentLength", "Content-Length is required")
    value = value.strip()
    # Digits only: int() would take "-1", "+5", " 5_0" -- "-1" used to read the socket to its end.
    if not value.isascii() or not value.isdigit():
        raise Refused(HTTPStatus.BAD_REQUEST, "contentLength",
                      f"Content-Length must be a non-negative integer, got {value[:40]!r}")
    length = int(value)
    if length > MAX_BODY:
        raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "tooLarge",
                      f"the body may be at most {MAX_BODY} bytes, got Content-Length {length}")
    return length


class _Handler(BaseHTTPRequestHandler):
    server: "AgentServer"
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client waits ~40 ms for
    # the delayed ACK before it sees the body.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        # Waiting for the next request line of a keep-alive connection ends after idle_timeout
        # (http.server then closes the connection).
        self.connection.settimeout(self.server.idle_timeout)

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.client_address[0], *args)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", MEDIA_TYPE)
        self.send_header("Content-Length", str(len(body)))
        if (request_id := requestid.current()) is not None:
            self.send_header(requestid.HEADER, request_id)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, refused: Refused) -> None:
        log.info("refused a request from %s: %s", self.client_address[0], refused)
        self.close_connection = True   # the body, if any, was not read
        self._send(refused.status, refused.body())

    def _check(self) -> int:
        """The request's headers are acceptable; returns the body's length."""
        if self.path.rstrip("/") != "/jsonrpc":
            raise Refused(HTTPStatus.NOT_FOUND, "path", "POST JSON-RPC requests to /jsonrpc")
        if self.headers.get("Origin") is not None:
            raise Refused(HTTPStatus.FORBIDDEN, "origin", "requests from a browser (with an Origin header) "
                          "are not accepted")
        media = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if media != MEDIA_TYPE:
            raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "contentType",
                          f"Content-Type must be {MEDIA_TYPE}, got {media[:60]!r}")
        if self.headers.get("Transfer-Encoding") is not None:
            raise Refused(HTTPStatus.LENGTH_REQUIRED, "contentLength", "chunked bodies are not accepted; "
                          "send Content-Length")
        return _content_length(self.headers.get("Content-Length"))

    def _read_body(self, length: int) -> bytes:
        """Exactly `length` bytes, all within body_timeout (a per-read timeout alone would let a
        client trickle one byte at a time forever)."""
        deadline = time.monotonic() + self.server.body_timeout
        chunks: list[bytes] = []
        left = length
        try:
            while left:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    raise Refused(HTTPStatus.BAD_REQUEST, "shortBody",
                                  f"the connection ended {left} bytes before Content-Length")
                chunks.append(chunk)
                left -= len(chunk)
        except (TimeoutError, socket.timeout):
            raise Refused(HTTPStatus.REQUEST_TIMEOUT, "bodyTimeout",
                          f"the body did not arrive within {self.server.body_timeout:g} s "
                          f"({length - left} of {length} bytes)") from None
        finally:
            self.connection.settimeout(self.server.idle_timeout)
        return b"".join(chunks)

    def _refuse_method(self) -> None:
        self._refuse(Refused(HTTPStatus.METHOD_NOT_ALLOWED, "method", "only POST is accepted"))

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _refuse_method  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        # The engine's request id is on every record this call logs (and echoed in the answer).
        token = requestid.bind(requestid.sane(self.headers.get(requestid.HEADER)))
        try:
            self._post()
        finally:
            requestid.unbind(token)

    def _post(self) -> None:
        try:
            body = self._read_body(self._check())
        except Refused as refused:
            self._refuse(refused)
            return
        answer = dispatch(body.decode("utf-8", errors="replace"), methods=self.server.methods,
                          context=self.server.context, validator=request_shape)
        self._send(HTTPStatus.OK, answer.encode("utf-8") if answer else b"")


def _busy_response() -> bytes:
    body = Refused(HTTPStatus.SERVICE_UNAVAILABLE, "busy", "too many connections; try again").body()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {MEDIA_TYPE}\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


class AgentServer(HTTPServer):
    """HTTPServer whose connections are served by a bounded pool of worker threads."""

    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], context: Any, verbs: dict[str, Verb],
                 tls: ssl.SSLContext | None = None, *, max_connections: int = 64,
                 idle_timeout: float = 60.0, body_timeout: float = 10.0) -> None:
        super().__init__(address, _Handler)
        self.context = context
        self.methods = jsonrpc_methods(verbs)
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self.tls = tls
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._pool = ThreadPoolExecutor(max_connections, thread_name_prefix="agent-conn")
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        if tls is not None:
            # The handshake runs in the worker (finish_request), so that a slow or certificate-less
            # client cannot hold up the accept loop.
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("refusing a connection from %s: all %d workers are busy", client_address[0],
                        self.max_connections)
            if not isinstance(request, ssl.SSLSocket):
                try:
                    request.setblocking(False)
                    request.send(_busy_response())
                except OSError:
                    pass
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open.add(request)
        self._pool.submit(self._serve_one, request, client_address)

    def _serve_one(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - one connection's failure is logged, not raised
            self.handle_error(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self.shutdown_request(request)
            self._slots.release()

    def finish_request(self, request, client_address) -> None:
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(HANDSHAKE_TIMEOUT)
            request.do_handshake()
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        log.info("connection from %s failed", client_address[0], exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        # Wake the workers blocked on keep-alive connections so the pool can end now.
        with self._open_lock:
            for conn in list(self._open):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._pool.shutdown(wait=True, cancel_futures=True)


def tls_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """Server TLS: clients must present a certificate the CA signed (mutual TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport(cfg: Any) -> ssl.SSLContext | None:
    """The TLS context the configuration asks for, or None for the development HTTP listener;
    StartupError when the configuration would let anyone but the engine drive the agent."""
    if cfg.tls:
        if not cfg.tls_ca:
            raise StartupError("[tls] has cert and key but no ca: the agent only accepts clients whose "
                               "certificate the CA signed (mutual TLS); set [tls] ca")
        try:
            return tls_context(str(cfg.tls_cert), str(cfg.tls_key), str(cfg.tls_ca))
        except (OSError, ssl.SSLError) as e:
            raise StartupError(f"cannot load the TLS files of [tls]: {e}") from e
    if not cfg.insecure_dev_http:
        raise StartupError("no [tls] cert, key and ca: the agent needs mutual TLS (`plugboard pki init` makes "
                           "the certificates). Plain HTTP is for development only: --insecure-dev-http "
                           "(agent.insecure_dev_http = true), on a loopback address")
    if not _loopback(cfg.listen_host):
        raise StartupError(f"plain HTTP (insecure_dev_http) is only allowed on a loopback address, not on "
                           f"{cfg.listen_host}: use [tls] or listen on 127.0.0.1")
    log.warning("plain HTTP on %s:%d: for development only", cfg.listen_host, cfg.listen_port)
    return None


def serve(agent: Any, verbs: dict[str, Verb]) -> AgentServer:
    cfg = agent.config
    return AgentServer((cfg.listen_host, cfg.listen_port), agent, verbs, transport(cfg),
                       max_connections=cfg.max_connections, idle_timeout=cfg.idle_timeout,
                       body_timeout=cfg.body_timeout)
