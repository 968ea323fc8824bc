"""Writing audit events with a hash chain."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Literal

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models import AuditChainHead, AuditEvent, Organisation, Project, User
from appliance.models.base import utcnow

Outcome = Literal["success", "failure", "denied"]
GENESIS_HASH = "0" * 64
_HEAD_ID = 1


def event_hash(event: AuditEvent) -> str:
    """SHA-256 over the event's fields and the previous event's hash, as canonical JSON."""
    at = event.at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fields = [event.seq, at, event.actor, event.actor_id, event.action, event.target, event.project_id,
              event.organisation_id, event.address, event.outcome, event.detail, event.prev_hash]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def _lock_head(session: orm.Session) -> AuditChainHead:
    head = session.scalar(sa.select(AuditChainHead).where(AuditChainHead.id == _HEAD_ID).with_for_update())
    if head is None:
        # First event ever: make the head. Two first writers on PostgreSQL collide on the
        # primary key and one transaction fails, which its caller sees like any conflict.
        head = AuditChainHead(id=_HEAD_ID, last_seq=0, last_hash=GENESIS_HASH)
        session.add(head)
        session.flush()
    return head


def record(
    session: orm.Session,
    action: str,
    *,
    actor: User | str | None,
    target: str = "",
    project: Project | None = None,
    organisation: Organisation | None = None,
    address: str = "",
    outcome: Outcome = "success",
    detail: str = "",
) -> AuditEvent:
    """Add one event to the session's transaction, chained to the one before it.

    ``actor`` is the user, or a name for an actor that is not an account ("system",
    "webhook:github", or the name someone failed to sign in as). Call it as late in the
    transaction as is convenient: the chain head stays locked until the commit.
    """
    if outcome not in ("success", "failure", "denied"):
        raise ValueError(f"unknown audit outcome {outcome!r}")
    if project is not None and organisation is None:
        organisation_id = project.organisation_id
    else:
        organisation_id = organisation.id if organisation is not None else None
    head = _lock_head(session)
    event = AuditEvent(
        seq=head.last_seq + 1,
        at=utcnow(),
        actor=(actor.username if isinstance(actor, User) else (actor or ""))[:255],
        actor_id=actor.id if isinstance(actor, User) else None,
        action=action,
        target=target[:512],
        project_id=project.id if project is not None else None,
        organisation_id=organisation_id,
        address=(address or "")[:64],
        outcome=outcome,
        detail=detail,
        prev_hash=head.last_hash,
    )
    event.hash = event_hash(event)
    head.last_seq = event.seq
    head.last_hash = event.hash
    session.add(event)
    session.flush()
    return event
