"""The HostClient Protocol over JSON-RPC 2.0 on HTTP(S) POST: jsonrpcclient builds the requests and
parses the answers, a requests.Session per agent keeps the connection alive and carries the TLS
settings (CA bundle, client certificate for mutual TLS).

Failures become exactly two engine errors:
- HostUnreachable: no usable answer (connection refused, DNS, timeout, TLS, HTTP error, not JSON-RPC);
- HostCallFailed: the agent answered a coded JSON-RPC error (schema/errors.yaml). The agent's code is in
  `host_code`, its message (with the detail) in `host_message`, and the error's name from
  `data.name` (e.g. "hotplugNic") in `host_error_name`; the whole `data` dict in `host_data`.
"""
from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from typing import Any

import jsonrpcclient
import requests
import urllib3

from engine import metrics, requestid
from engine.config import EngineConfig, TlsSettings
from engine.dao.models import Host
from engine.errors import HostCallFailed, HostUnreachable

log = logging.getLogger(__name__)

# A long-poll (Host.getEvents with a `timeout` param) may legitimately take that long: the read
# timeout is raised to the poll's timeout plus this margin.
LONG_POLL_MARGIN = 5.0
# The largest answer read from an agent (a host-device inventory of a big host is well under this);
# whatever is at a host's URL cannot make the engine buffer more.
MAX_ANSWER_BYTES = 32 * 1024 * 1024
MAX_HOST_MESSAGE = 2000     # characters of an agent's error message kept in faults and the audit log
_ids = itertools.count(1)
_ids_lock = threading.Lock()


def _next_id() -> int:
    with _ids_lock:
        return next(_ids)


class JsonRpcHostClient:
    """One agent at `url` (e.g. http://127.0.0.1:54321/jsonrpc). Safe to share between threads."""

    def __init__(self, name: str, url: str, *, timeout: float = 30, connect_timeout: float = 5,
                 tls: TlsSettings | None = None) -> None:
        self.name = name
        self.url = url
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.tls = tls or TlsSettings()
        self._session = requests.Session()
        # Only the agent is spoken to: never pick proxies or a .netrc up from the environment.
        self._session.trust_env = False
        self._session.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
        self._verify: bool | str = True
        if not self.tls.verify:
            self._verify = False
        elif self.tls.ca_file is not None:
            self._verify = str(self.tls.ca_file)
        self._session.verify = self._verify
        if self.tls.cert_file is not None:
            self._session.cert = (str(self.tls.cert_file), str(self.tls.key_file)) if self.tls.key_file \
                else str(self.tls.cert_file)
        self._prepared: requests.PreparedRequest | None = None

    def __repr__(self) -> str:
        return f"JsonRpcHostClient({self.name!r}, {self.url!r})"

    def _unreachable(self, reason: str, *, sent: bool = False) -> HostUnreachable:
        """`sent`: the request may have reached the agent, so what it did is unknown."""
        return HostUnreachable(f"host {self.name} ({self.url}) is unreachable: {reason}", host=self.name,
                               outcome_unknown=sent)

    def read_timeout(self, verb: str, params: dict[str, Any] | None, timeout: float | None) -> float:
        """The read timeout of one call: the override, else the client's; a long-poll gets its own
        wait plus a margin so that an idle poll is not mistaken for a dead host."""
        read = self.timeout if timeout is None else float(timeout)
        poll = (params or {}).get("timeout") if verb == "Host.getEvents" else None
        if isinstance(poll, (int, float)) and not isinstance(poll, bool):
            read = max(read, float(poll) + LONG_POLL_MARGIN)
        return read

    def _post(self, body: bytes, read: float) -> tuple[requests.Response, bytes]:
        """POST `body` on the session's pooled keep-alive connection; the response and at most
        MAX_ANSWER_BYTES + 1 bytes of its body. The request is prepared once for this agent (URL,
        headers, TLS) and each call sends a copy straight through the session's adapter: Session.post
        would merge environment settings, cookies and hooks again on every call (about 0.7 ms here) for
        nothing -- one fixed URL, no proxies, no cookies, no redirects."""
        if self._prepared is None:
            self._prepared = self._session.prepare_request(requests.Request("POST", self.url))
        prepared = self._prepared.copy()
        if (request_id := requestid.current()) is not None:
            prepared.headers[requestid.HEADER] = request_id     # the agent logs the engine's request id
        prepared.prepare_body(body, None)
        response = self._session.get_adapter(self.url).send(
            prepared, timeout=(self.connect_timeout, read), verify=self._verify, cert=self._session.cert,
            proxies={}, stream=True)
        try:
            answer = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
        except urllib3.exceptions.HTTPError as e:     # read now: its errors are this call's
            raise requests.exceptions.ConnectionError(e) from e
        if len(answer) > MAX_ANSWER_BYTES:
            response.close()                         # not reusable: the rest of the body is unread
        else:
            response.raw.release_conn()
        return response, answer

    def call(self, verb: str, params: dict[str, Any] | None = None, *,
             timeout: float | None = None) -> dict[str, Any]:
        started = time.monotonic()
        outcome = "unreachable"
        try:
            result = self._call(verb, params, timeout)
            outcome = "ok"
            return result
        except HostCallFailed:
            outcome = "failed"
            raise
        finally:
            metrics.host_call(verb, outcome, time.monotonic() - started)

    def _call(self, verb: str, params: dict[str, Any] | None, timeout: float | None) -> dict[str, Any]:
        request = jsonrpcclient.request(verb, params or {}, id=_next_id())
        read = self.read_timeout(verb, params, timeout)
        started = time.monotonic()
        try:
            response, answer = self._post(json.dumps(request).encode("utf-8"), read)
        except requests.exceptions.SSLError as e:
            raise self._unreachable(f"TLS error: {_root_cause(e)}") from e
        except requests.exceptions.ConnectTimeout as e:
            raise self._unreachable(f"connection timed out after {self.connect_timeout:g} s") from e
        except requests.exceptions.ReadTimeout as e:
            raise self._unreachable(f"no answer to {verb} within {read:g} s", sent=True) from e
        except requests.exceptions.ConnectionError as e:
            # Refused or unresolvable: nothing was sent. Dropped later: the agent may have acted.
            never_sent = _caused_by(e, (ConnectionRefusedError, urllib3.exceptions.NewConnectionError,
                                        urllib3.exceptions.NameResolutionError))
            raise self._unreachable(f"connection failed: {_root_cause(e)}", sent=not never_sent) from e
        except requests.exceptions.RequestException as e:
            raise self._unreachable(f"{type(e).__name__}: {e}") from e
        elapsed = time.monotonic() - started

        # What a URL that is not an agent answers is never quoted: a fault must not carry another
        # service's content back to whoever registered the URL.
        if response.status_code != 200:
            raise self._unreachable(f"HTTP {response.status_code} {response.reason or ''}".rstrip(), sent=True)
        if len(answer) > MAX_ANSWER_BYTES:
            raise self._unreachable(f"the answer to {verb} is larger than {MAX_ANSWER_BYTES} bytes", sent=True)
        try:
            body = json.loads(answer)
        except ValueError as e:
            raise self._unreachable(f"the answer to {verb} is not JSON", sent=True) from e
        try:
            parsed = jsonrpcclient.parse(body)
        except (KeyError, TypeError, AttributeError) as e:
            raise self._unreachable(f"the answer to {verb} is not a JSON-RPC response", sent=True) from e
        if not isinstance(parsed, (jsonrpcclient.Ok, jsonrpcclient.Error)) or parsed.id != request["id"]:
            raise self._unreachable(f"the answer to {verb} does not match the request (id {request['id']})",
                                    sent=True)

        if isinstance(parsed, jsonrpcclient.Error):
            log.info("%s on %s failed in %.3f s: %s %s", verb, self.name, elapsed, parsed.code, parsed.message)
            raise self._call_failed(verb, parsed)
        log.debug("%s on %s answered in %.3f s", verb, self.name, elapsed)
        result = parsed.result
        if result is None:
            return {}
        if not isinstance(result, dict):
            raise self._unreachable(f"the result of {verb} is not an object", sent=True)
        return result

    def _call_failed(self, verb: str, error: jsonrpcclient.Error) -> HostCallFailed:
        data = error.data if isinstance(error.data, dict) else {}
        name = data.get("name")
        detail = data.get("detail")
        host_message = str(error.message)
        if detail and str(detail) not in host_message:
            host_message = f"{host_message}: {detail}"
        host_message = host_message[:MAX_HOST_MESSAGE]
        label = f"{name}, code {error.code}" if name else f"code {error.code}"
        err = HostCallFailed(f"{verb} failed on host {self.name}: {host_message} ({label})",
                             host=self.name, host_code=error.code, host_message=host_message)
        err.host_error_name = name  # type: ignore[attr-defined]
        err.host_data = data  # type: ignore[attr-defined]
        err.verb = verb  # type: ignore[attr-defined]
        return err

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "JsonRpcHostClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """Is any exception in the chain (causes, contexts, urllib3 reasons) one of `kinds`?"""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, kinds):
            return True
        reason = getattr(e, "reason", None)
        stack += [e.__cause__, e.__context__, reason if isinstance(reason, BaseException) else None]
        stack += [a for a in e.args if isinstance(a, BaseException)]
    return False


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the wrapper noise."""
    seen = exc
    while True:
        nxt = seen.__cause__ or seen.__context__
        if nxt is None and seen.args and isinstance(seen.args[0], BaseException):
            nxt = seen.args[0]
        if nxt is None or nxt is seen:
            break
        seen = nxt
        reason = getattr(seen, "reason", None)
        if isinstance(reason, BaseException):
            seen = reason
    return str(seen) or type(seen).__name__


class CachingClientFactory:
    """A HostClientFactory that keeps one client per host (by id and url): a host whose url changed
    gets a new client and the old one is closed."""

    def __init__(self, *, timeout: float = 30, connect_timeout: float = 5,
                 tls: TlsSettings | None = None) -> None:
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.tls = tls
        self._clients: dict[str, JsonRpcHostClient] = {}
        self._lock = threading.Lock()

    def __call__(self, host: Host) -> JsonRpcHostClient:
        key = host.id or host.url
        with self._lock:
            client = self._clients.get(key)
            if client is not None and client.url == host.url and client.name == host.name:
                return client
            if client is not None:
                client.close()
            client = self._clients[key] = JsonRpcHostClient(
                host.name, host.url, timeout=self.timeout, connect_timeout=self.connect_timeout, tls=self.tls)
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


def client_factory(settings: EngineConfig) -> CachingClientFactory:
    """The engine's HostClientFactory, built from its configuration (host timeouts and TLS)."""
    return CachingClientFactory(timeout=settings.host_timeout, connect_timeout=settings.host_connect_timeout,
                                tls=settings.tls)
