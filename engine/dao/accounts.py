"""Projects, users and their memberships. Functions take the session first and never commit."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.dao.models import ROLES, Membership, Project, User

__all__ = ["get_project", "add_project", "list_projects", "get_user", "add_user", "list_users", "set_membership"]


def get_project(s: Session, project_id: str) -> Project | None:
    return s.get(Project, project_id)


def add_project(s: Session, project_id: str, description: str = "") -> Project:
    project = Project(id=project_id, description=description)
    s.add(project)
    s.flush()
    return project


def list_projects(s: Session) -> Sequence[Project]:
    return s.scalars(select(Project).order_by(Project.id)).all()


def get_user(s: Session, name: str) -> User | None:
    return s.scalars(select(User).where(User.name == name)).one_or_none()


def add_user(s: Session, name: str, password_hash: str | None = None) -> User:
    user = User(name=name, password_hash=password_hash)
    s.add(user)
    s.flush()
    return user


def list_users(s: Session) -> Sequence[User]:
    return s.scalars(select(User).order_by(User.name)).all()


def set_membership(s: Session, user: User, project_id: str, role: str) -> Membership:
    """Give `user` `role` in the project (a user has one role per project; a second call changes it)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    membership = s.get(Membership, (user.id, project_id))
    if membership is None:
        membership = Membership(user_id=user.id, project_id=project_id, role=role)
        s.add(membership)
    else:
        membership.role = role
    s.flush()
    s.refresh(user, ["memberships"])
    return membership
