"""Ask a host's agent for its capabilities again (networks, bridges, hooks, whitelists) and store
them. An unreachable host is marked unreachable."""
from __future__ import annotations

from dataclasses import dataclass

from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import audit, hosts as hosts_dao
from engine.dao.models import Host
from engine.devices import inventory
from engine.errors import HostCallFailed, HostUnreachable, NotFound, Reason
from engine.hostclient import HostClientFactory
from engine.vocab import HOST_UNREACHABLE, HOST_UP


@dataclass(frozen=True)
class Params:
    host_id: str


def validate(params: Params, *, host: Host) -> list[Reason]:
    return []      # any known host may be refreshed, whatever its status


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    with sessions.begin() as s:
        host = hosts_dao.get(s, params.host_id)
        if host is None:
            raise NotFound(f"Host {params.host_id} does not exist.")
        validate(params, host=host)
    try:
        caps = hosts(host).call("Host.getCapabilities", {})
    except HostUnreachable as err:
        with sessions.begin() as s:
            hosts_dao.set_status(s, host.id, HOST_UNREACHABLE)
            audit.record(s, "HOST_UNREACHABLE", f"Host {host.name} could not be reached: {err.message}",
                         severity="error", host_id=host.id, host=host.name)
        raise
    except HostCallFailed as err:
        with sessions.begin() as s:
            audit.record(s, "HOST_REFRESH_FAILED", f"Host {host.name} could not report its capabilities: "
                         f"{err.host_code} {err.host_message}", severity="error", host_id=host.id,
                         host_code=err.host_code, host_message=err.host_message, host=host.name)
        raise
    devices = inventory.read_or_warn(sessions, hosts, host)
    with sessions.begin() as s:
        hosts_dao.update_capabilities(s, host.id, caps, status=HOST_UP)
        audit.record(s, "HOST_REFRESHED", f"Host {host.name} capabilities refreshed", host_id=host.id,
                     host=host.name)
        if devices is not None:
            inventory.store(s, host, devices)
    return Outcome(id=host.id)
