from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class ExternalIdentity(Base):
    """A link between a local account and an identity at a directory or provider:
    ``provider`` is "ldap", "oidc:<name>", "github" or "gitlab"; ``subject`` is the
    provider's stable id for the person (LDAP DN's entryUUID or uid, OIDC ``sub``, the
    numeric GitHub/GitLab user id) — never the e-mail address, which can change hands."""

    __tablename__ = "external_identities"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    user_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    subject: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    email: orm.Mapped[str | None] = orm.mapped_column(sa.String(254))
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    last_login_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)

    __table_args__ = (sa.UniqueConstraint("provider", "subject"),)
