"""Queries on clusters. Functions take the session first and never commit."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.dao.models import Cluster

DEFAULT_NAME = "Default"
DEFAULT_COMPAT_VERSION = "4.7"


def get(s: Session, cluster_id: str) -> Cluster | None:
    return s.get(Cluster, cluster_id)


def get_by_name(s: Session, name: str) -> Cluster | None:
    return s.scalars(select(Cluster).where(Cluster.name == name)).one_or_none()


def ensure_default(s: Session) -> Cluster:
    """The cluster named "Default", created (and flushed) when missing, as oVirt ships one. Two
    transactions that both found it missing (the first host and the first VM of a new database, on
    PostgreSQL): the loser's insert is undone to a savepoint and it takes the winner's."""
    cluster = get_by_name(s, DEFAULT_NAME)
    if cluster is not None:
        return cluster
    try:
        with s.begin_nested():
            cluster = Cluster(name=DEFAULT_NAME, compat_version=DEFAULT_COMPAT_VERSION,
                              description="The default cluster")
            s.add(cluster)
            s.flush()
        return cluster
    except IntegrityError:
        made = get_by_name(s, DEFAULT_NAME)
        if made is None:
            raise
        return made


def list(s: Session) -> Sequence[Cluster]:  # noqa: A001 - the module's verb, as in the contract
    return s.scalars(select(Cluster).order_by(Cluster.name)).all()
