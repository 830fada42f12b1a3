"""Create a cluster (its compatibility version gates features such as NIC hot plug)."""
from __future__ import annotations

from dataclasses import dataclass

from engine import osinfo
from engine.commands import common
from engine import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, clusters
from engine.dao.models import Cluster
from engine.errors import Reason
from engine.hostclient import HostClientFactory

DESCRIPTION_MAX = 255


@dataclass(frozen=True)
class Params:
    name: str
    compat_version: str = "4.7"
    description: str = ""


def validate(params: Params, *, name_in_use: bool) -> list[Reason]:
    found: list[Reason] = []
    found += common.check_name("cluster", params.name)
    if not found and name_in_use:
        found.append(R.name_in_use("cluster", params.name))
    if osinfo.parse_version(params.compat_version) is None:
        found.append(R.compat_version_invalid(params.compat_version))
    if len(params.description or "") > DESCRIPTION_MAX:
        found.append(R.field_invalid("description", params.description, f"at most {DESCRIPTION_MAX} characters"))
    return found


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    with common.audited(sessions, "CLUSTER_ADD"), common.unique_name("cluster", params.name):
        with sessions.begin() as s:
            taken = common.name_ok(params.name) and clusters.get_by_name(s, params.name) is not None
            found = validate(params, name_in_use=taken)
            if found:
                raise common.refusal(found, f"Cannot add cluster {params.name}.")
            cluster = Cluster(name=params.name, compat_version=params.compat_version,
                              description=params.description or "")
            s.add(cluster)
            s.flush()
            audit.record(s, "CLUSTER_ADDED", f"Cluster {cluster.name} added (compatibility {cluster.compat_version})",
                         cluster=cluster.name, cluster_id=cluster.id)
            return Outcome(id=cluster.id, created=True)
