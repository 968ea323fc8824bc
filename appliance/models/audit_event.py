from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class AuditEvent(Base):
    """One state-changing action, written in the same transaction as the action itself.

    The table is the outbox: a periodic task copies rows to the analytics store and stamps
    ``shipped_at``; rows are never updated otherwise. ``seq`` orders the hash chain: each row's
    ``hash`` covers its fields and the ``prev_hash`` of the row before it, so a changed,
    removed or reordered event breaks the chain (``prts audit verify``).
    """

    __tablename__ = "audit_events"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    seq: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, unique=True)
    at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: orm.Mapped[str] = orm.mapped_column(sa.String(255), default="")
    actor_id: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)  # no FK: the trail outlives the account
    action: orm.Mapped[str] = orm.mapped_column(sa.String(64), index=True)
    target: orm.Mapped[str] = orm.mapped_column(sa.String(512), default="")
    project_id: orm.Mapped[int | None] = orm.mapped_column(sa.Integer, index=True)
    organisation_id: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    address: orm.Mapped[str] = orm.mapped_column(sa.String(64), default="")
    outcome: orm.Mapped[str] = orm.mapped_column(sa.String(16), default="success")
    detail: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    prev_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    hash: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    shipped_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime, index=True)

    __table_args__ = (sa.CheckConstraint("outcome IN ('success', 'failure', 'denied')", name="known_outcome"),)


class AuditChainHead(Base):
    """A single row holding the chain's last sequence number and hash. Writers lock it
    (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite serialises writers anyway), so two
    transactions can never both extend the chain from the same event."""

    __tablename__ = "audit_chain_head"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    last_seq: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0)
    last_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64))
