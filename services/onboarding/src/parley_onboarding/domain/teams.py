"""Teams (pure): a name, members and business hours; a user may belong to several teams."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from parley_events import BusinessHours, TeamSnapshot

from parley_onboarding.domain.errors import DomainError


@dataclass
class Team:
    """A group of users that channel access can be granted to."""

    id: str
    tenant_id: str
    name: str
    members: list[str] = field(default_factory=list)
    revision: int = 0
    deleted: bool = False
    business_hours: BusinessHours | None = None
    """The schedule the team's channels take when they have none of their own (docs/onboarding.md)."""

    @classmethod
    def create(cls, tenant_id: str, name: str) -> Team:
        team = cls(id=f"team_{uuid.uuid4().hex[:16]}", tenant_id=tenant_id, name=_name(name))
        team.revision = 1
        return team

    def rename(self, name: str) -> bool:
        new = _name(name)
        if new == self.name:
            return False
        self.name = new
        self.revision += 1
        return True

    def add_member(self, user_id: str) -> bool:
        if user_id in self.members:
            return False
        self.members.append(user_id)
        self.revision += 1
        return True

    def remove_member(self, user_id: str) -> bool:
        if user_id not in self.members:
            return False
        self.members.remove(user_id)
        self.revision += 1
        return True

    def set_business_hours(self, hours: BusinessHours | None) -> bool:
        if hours == self.business_hours:
            return False
        self.business_hours = hours
        self.revision += 1
        return True

    def delete(self) -> bool:
        if self.deleted:
            return False
        self.deleted = True
        self.revision += 1
        return True

    def snapshot(self) -> TeamSnapshot:
        return TeamSnapshot(
            team_id=self.id,
            tenant_id=self.tenant_id,
            name=self.name,
            members=tuple(self.members),
            revision=self.revision,
            deleted=self.deleted,
        )


def _name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > 100:
        raise DomainError("INVALID_TEAM_NAME", "a team name has 1 to 100 characters", field="name")
    return cleaned
