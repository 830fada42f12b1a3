"""Who acts: the `Principal` every command takes. Until authentication lands, every request acts as
the fixed local administrator `LOCAL_ADMIN`; tenancy is still checked in one place, the commands'
VM loader, so that turning authentication on changes who the principal is, not where it is checked."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

ADMIN: Final = "admin"
MEMBER: Final = "member"


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


LOCAL_ADMIN: Final = Principal("admin", roles=frozenset({ADMIN}))
