"""Who acts: the `Principal` every command takes -- a user, its roles and its projects. The fronts
authenticate a request (engine.authn) and hand its principal to the commands; tenancy is checked in
one place, the commands' VM loader, and roles by each front's policy before a route runs.

`LOCAL_ADMIN` is the default of commands called in-process (the command line, which holds the
database's credentials anyway, and tests); no HTTP request ever acts as it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from engine.vocab import ADMIN, MEMBER, ROLES

__all__ = ["ADMIN", "MEMBER", "ROLES", "Principal", "LOCAL_ADMIN"]


@dataclass(frozen=True)
class Principal:
    user: str
    roles: frozenset[str] = field(default_factory=frozenset)
    projects: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    def sees_project(self, project_id: str) -> bool:
        """Whether the principal may see a resource of `project_id` (admins see every project)."""
        return self.is_admin or project_id in self.projects

    @property
    def home_project(self) -> str | None:
        """The project a new VM goes to when the request names none: the only one the principal has."""
        return next(iter(self.projects)) if len(self.projects) == 1 else None


LOCAL_ADMIN: Final = Principal("admin", roles=frozenset({ADMIN}))
