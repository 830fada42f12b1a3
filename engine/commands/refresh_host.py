"""Ask a host's agent for its capabilities again (networks, bridges, hooks, whitelists) and store
them. An unreachable host that was up is marked unreachable; a host in maintenance stays there (only
activate_host takes it out)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.commands import add_host, common
from engine.commands.outcome import Outcome
from engine.dao import audit, hosts as hosts_dao
from engine.dao.models import Host
from engine.devices import inventory
from engine.errors import HostCallFailed, HostUnreachable, Reason
from engine.hostclient import HostClientFactory
from engine.vocab import HOST_MAINTENANCE, HOST_UNREACHABLE, HOST_UP


@dataclass(frozen=True)
class Params:
    host_id: str


def validate(params: Params, *, host: Host) -> list[Reason]:
    return []      # any known host may be refreshed, whatever its status


def load(sessions: common.Sessions, host_id: str) -> Host:
    with sessions.begin() as s:
        return common.load_host_by_id(s, host_id)


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    host = load(sessions, params.host_id)
    return refresh(sessions, hosts, host, action="HOST_REFRESH", done="HOST_REFRESHED",
                   check=lambda row: validate(params, host=row))


def refresh(sessions: common.Sessions, hosts: HostClientFactory, host: Host, *, action: str, done: str,
            check: Callable[[Host], list[Reason]], activate: bool = False) -> Outcome:
    """Read the host's capabilities and devices and store them; `check` judges the host's row again,
    locked, before anything is stored; `activate`: the host is up afterwards even if it was in
    maintenance. Audited as `action` (its refusals, `<action>_FAILED`) and `done`."""
    try:
        caps = hosts(host).call("Host.getCapabilities", {})
    except HostUnreachable as err:
        with sessions.begin() as s:
            hosts_dao.set_status_cas(s, host.id, (HOST_UP,), HOST_UNREACHABLE)
            audit.record(s, "HOST_UNREACHABLE", f"Host {host.name} could not be reached: {err.message}",
                         severity="error", host_id=host.id, host=host.name)
        raise
    except HostCallFailed as err:
        with sessions.begin() as s:
            audit.record(s, f"{action}_FAILED", f"Host {host.name} could not report its capabilities: "
                         f"{err.host_code} {err.host_message}", severity="error", host_id=host.id,
                         host_code=err.host_code, host_message=err.host_message, host=host.name)
        raise
    devices = inventory.read_or_warn(sessions, hosts, host)
    refused = f"Cannot {'activate' if activate else 'refresh'} host {host.name}."
    with common.audited(sessions, action, host_id=host.id), \
            add_host.one_host_per_agent(sessions, host.url, caps["hostId"], refused), sessions.begin() as s:
        row = common.load_host_by_id(s, host.id, lock=True)
        found = check(row) + add_host.check_agent(s, host.url, caps["hostId"], host_id=host.id)
        if found:       # e.g. the URL now reaches an agent another host has
            raise common.refusal(found, refused)
        status = HOST_UP if activate or row.status != HOST_MAINTENANCE else None
        hosts_dao.update_capabilities(s, host.id, caps, status=status, agent_id=caps["hostId"])
        audit.record(s, done, f"Host {host.name} " + ("activated" if activate else "capabilities refreshed"),
                     host_id=host.id, host=host.name)
        if devices is not None:
            inventory.store(s, host, devices)
    return Outcome(id=host.id)
