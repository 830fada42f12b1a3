"""How the engine talks to a host agent. Commands and the monitor depend only on the `HostClient`
Protocol; the JSON-RPC implementation lives in engine/jsonrpc_client.py, the unit tests' fake elsewhere."""
from __future__ import annotations

from typing import Any, Callable, Protocol

from engine.dao.models import Host


class HostClient(Protocol):
    """One agent. `call` sends a verb of schema/verbs.yaml and returns its result dict.

    Raises engine.errors.HostCallFailed (the agent's code and message in host_code/host_message)
    or engine.errors.HostUnreachable (naming the host); never anything else for a host-side failure.
    """

    name: str

    def call(self, verb: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        ...


# Commands receive a factory, so that they can reach the host a VM runs on.
HostClientFactory = Callable[[Host], HostClient]
