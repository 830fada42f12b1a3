"""Ask a host's agent for its capabilities again (networks, bridges, hooks, whitelists) and store
them. An unreachable host is marked unreachable."""
from __future__ import annotations

from dataclasses import dataclass

from engine.commands import add_host, common
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
    refused = f"Cannot refresh host {host.name}."
    with common.audited(sessions, "HOST_REFRESH", host_id=host.id), \
            add_host.one_host_per_agent(sessions, host.url, caps["hostId"], refused), sessions.begin() as s:
        found = add_host.check_agent(s, host.url, caps["hostId"], host_id=host.id)
        if found:       # the URL now reaches an agent another host has
            raise common.refusal(found, refused)
        hosts_dao.update_capabilities(s, host.id, caps, status=HOST_UP, agent_id=caps["hostId"])
        audit.record(s, "HOST_REFRESHED", f"Host {host.name} capabilities refreshed", host_id=host.id,
                     host=host.name)
        if devices is not None:
            inventory.store(s, host, devices)
    return Outcome(id=host.id)
