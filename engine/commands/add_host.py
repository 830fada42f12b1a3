"""Add a host (its agent's JSON-RPC URL) to a cluster: the engine asks the agent for its capabilities
(Host.getCapabilities) and stores them. A host that cannot be reached is not added: the command
answers the host's fault. An agent already registered (its hostId), under any name or URL, is not
added twice: two hosts of one agent would each poll its journal, apply its events and list its host
devices, which two VMs could then both claim."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.commands import common
from engine import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, clusters, hosts as hosts_dao
from engine.dao.models import Cluster, Host, new_id, utcnow
from engine.devices import inventory
from engine.errors import HostCallFailed, HostUnreachable, Reason
from engine.hostclient import HostClientFactory

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


@dataclass(frozen=True)
class Params:
    name: str
    url: str
    cluster_id: str | None = None        # None: the default cluster


# An agent's address: scheme, host and port, and a path of printable characters. Credentials, a query
# or a fragment have no place in it; the explicit port keeps a typo from reaching a well-known service.
_URL_CHARS = re.compile(r"^[!-~]{1,255}\Z")


def check_url(url: str) -> list[Reason]:
    if not _URL_CHARS.match(url or ""):
        return [R.url_invalid(url)]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return [R.url_invalid(url)]
    if (parts.scheme not in ("http", "https") or not parts.hostname or not port
            or parts.username is not None or parts.password is not None or parts.query or parts.fragment
            or url.endswith(("?", "#"))):
        return [R.url_invalid(url)]
    return []


def validate(params: Params, *, cluster: Cluster | None, name_in_use: bool) -> list[Reason]:
    found: list[Reason] = []
    if not NAME_RE.match(params.name or ""):
        found.append(R.name_invalid("host", params.name, "1-64 letters, digits, '_', '.', '-'"))
    elif name_in_use:
        found.append(R.name_in_use("host", params.name))
    found += check_url(params.url)
    if cluster is None:
        found.append(R.cluster_not_found(params.cluster_id or "Default"))
    return found


def check_agent(s: Session, url: str, agent_id: str, *, host_id: str | None = None) -> list[Reason]:
    """The agent `agent_id` (at `url`) is no other host's than `host_id`'s (None: a host to be added)."""
    other = hosts_dao.get_by_agent(s, agent_id)
    return [] if other is None or other.id == host_id else [R.agent_registered(url, agent_id, other.name)]


@contextmanager
def one_host_per_agent(sessions: common.Sessions, url: str, agent_id: str, message: str) -> Iterator[None]:
    """Two requests that both found the agent free: the unique agent_id lets one win; the other is
    refused as check_agent refuses, never an internal error."""
    try:
        yield
    except IntegrityError as err:
        if "agent_id" not in str(err.orig).lower():
            raise
        with sessions() as s:
            found = check_agent(s, url, agent_id)
        raise common.refusal(found or [R.agent_registered(url, agent_id, "another host")], message) from err


def _load(s: Session, params: Params) -> tuple[list[Reason], Cluster | None]:
    cluster = clusters.ensure_default(s) if params.cluster_id is None else clusters.get(s, params.cluster_id)
    taken = NAME_RE.match(params.name or "") is not None and hosts_dao.get_by_name(s, params.name) is not None
    return validate(params, cluster=cluster, name_in_use=taken), cluster


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    with common.audited(sessions, "HOST_ADD"), common.unique_name("host", params.name):
        with sessions.begin() as s:
            found, cluster = _load(s, params)
            if found:
                raise common.refusal(found, f"Cannot add host {params.name}.")
            assert cluster is not None      # validate() refuses a missing cluster
            cluster_id = cluster.id

    host = Host(id=new_id(), name=params.name, url=params.url, cluster_id=cluster_id, status="up")
    try:
        caps = hosts(host).call("Host.getCapabilities", {})
        # The monitor starts where the agent's journal is now: what happened before the host was
        # added (an earlier engine's VMs, their stops) is history, not news.
        journal = hosts(host).call("Host.getEvents", {"after": 0, "timeout": 0, "limit": 1})
    except (HostUnreachable, HostCallFailed) as err:
        unreachable = isinstance(err, HostUnreachable)
        with sessions.begin() as s:
            audit.record(s, "HOST_UNREACHABLE" if unreachable else "HOST_ADD_FAILED",
                         f"Cannot add host {params.name} ({params.url}): "
                         + (err.message if unreachable else f"host answered {err.host_code} {err.host_message}"),
                         severity="error", host_code=err.host_code, host_message=err.host_message,
                         host=params.name, url=params.url)
        raise
    devices = inventory.read_or_warn(sessions, hosts, host)

    refused = f"Cannot add host {params.name}."
    with common.audited(sessions, "HOST_ADD"), common.unique_name("host", params.name), \
            one_host_per_agent(sessions, params.url, caps["hostId"], refused):
        with sessions.begin() as s:
            found, cluster = _load(s, params)     # again: the name may have been taken meanwhile
            found += check_agent(s, params.url, caps["hostId"])
            if found:
                raise common.refusal(found, refused)
            assert cluster is not None
            host.capabilities = caps
            host.agent_id = caps["hostId"]
            host.last_refresh = utcnow()
            host.last_event_seq = int(journal.get("last") or 0)
            s.add(host)
            s.flush()
            audit.record(s, "HOST_ADDED", f"Host {host.name} added to cluster {cluster.name}", host_id=host.id,
                         host=host.name, cluster=cluster.name)
            if devices is not None:
                inventory.store(s, host, devices)
            return Outcome(id=host.id, created=True)
