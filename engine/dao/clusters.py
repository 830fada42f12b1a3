"""Queries on clusters. Functions take the session first and never commit."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.dao.models import Cluster

DEFAULT_NAME = "Default"
DEFAULT_COMPAT_VERSION = "4.7"


def get(s: Session, cluster_id: str) -> Cluster | None:
    return s.get(Cluster, cluster_id)


def get_by_name(s: Session, name: str) -> Cluster | None:
    return s.scalars(select(Cluster).where(Cluster.name == name)).one_or_none()


def ensure_default(s: Session) -> Cluster:
    """The cluster named "Default", created (and flushed) when missing, as oVirt ships one."""
    cluster = get_by_name(s, DEFAULT_NAME)
    if cluster is None:
        cluster = Cluster(name=DEFAULT_NAME, compat_version=DEFAULT_COMPAT_VERSION,
                          description="The default cluster")
        s.add(cluster)
        s.flush()
    return cluster


def list(s: Session) -> Sequence[Cluster]:  # noqa: A001 - the module's verb, as in the contract
    return s.scalars(select(Cluster).order_by(Cluster.name)).all()
