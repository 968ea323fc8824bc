from __future__ import annotations

import enum

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base


class Role(enum.IntEnum):
    """Roles in ascending power; the highest of several grants applies."""

    VIEWER = 10
    DEVELOPER = 20
    MAINTAINER = 30
    ADMIN = 40

    @classmethod
    def parse(cls, text: str) -> "Role":
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(r.name.lower() for r in cls)
            raise ValueError(f"unknown role {text!r} (expected one of {names})") from None


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class Membership(Base):
    """A role granted to one principal (a user or a team) on one scope: an organisation, a
    project, or one environment of a project (``project_id`` and ``environment`` set)."""

    __tablename__ = "memberships"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    user_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    team_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    organisation_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("organisations.id", ondelete="CASCADE"))
    project_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    # An environment's name (deployments name them: "production", "staging"); only with a project.
    environment: orm.Mapped[str | None] = orm.mapped_column(sa.String(100))
    role: orm.Mapped[int] = orm.mapped_column(sa.Integer)

    __table_args__ = (
        sa.CheckConstraint("(user_id IS NULL) <> (team_id IS NULL)", name="one_principal"),
        sa.CheckConstraint("(organisation_id IS NULL) <> (project_id IS NULL)", name="one_scope"),
        sa.CheckConstraint("environment IS NULL OR project_id IS NOT NULL", name="environment_in_project"),
        sa.CheckConstraint("role IN (10, 20, 30, 40)", name="known_role"),
        # One grant per principal and scope; COALESCE because NULLs never collide in a unique index.
        sa.Index(
            "uq_memberships_grant",
            sa.func.coalesce(user_id, 0),
            sa.func.coalesce(team_id, 0),
            sa.func.coalesce(organisation_id, 0),
            sa.func.coalesce(project_id, 0),
            sa.func.coalesce(environment, sa.literal_column("''")),
            unique=True,
        ),
    )
