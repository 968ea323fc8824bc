from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow

WEBHOOK_EVENTS = ("run", "deployment")  # run finished, deployment finished


class Webhook(Base):
    """An outbound webhook: the appliance POSTs JSON signed with HMAC-SHA256 to ``url``."""

    __tablename__ = "webhooks"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    project_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    url: orm.Mapped[str] = orm.mapped_column(sa.String(2000))
    # The signing secret, encrypted like project secrets (SecretBox); shown once.
    secret_ciphertext: orm.Mapped[bytes] = orm.mapped_column(sa.LargeBinary)
    events: orm.Mapped[str] = orm.mapped_column(sa.String(100))  # comma-separated WEBHOOK_EVENTS
    active: orm.Mapped[bool] = orm.mapped_column(sa.Boolean, default=True)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event sent (or being sent) to one webhook, with the outcome of its last attempt."""

    __tablename__ = "webhook_deliveries"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    webhook_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: orm.Mapped[str] = orm.mapped_column(sa.String(20))
    # A random id sent as X-PRTS-Delivery, the same on every retry, so receivers can dedupe.
    uuid: orm.Mapped[str] = orm.mapped_column(sa.String(36), unique=True)
    payload: orm.Mapped[str] = orm.mapped_column(sa.Text)
    status: orm.Mapped[str] = orm.mapped_column(sa.String(10), default="pending")  # pending, delivered, failed
    attempts: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)
    response_code: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    response_excerpt: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    error: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    duration_ms: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    finished_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)

    __table_args__ = (
        sa.Index("ix_webhook_deliveries_webhook_created", webhook_id, created_at),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="known_status"),
    )
