"""Writing audit events with a hash chain."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import urllib.parse
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
    locked = (sa.select(AuditChainHead).where(AuditChainHead.id == _HEAD_ID).with_for_update()
              .execution_options(populate_existing=True))
    head = session.scalar(locked)
    if head is None:
        # First event ever: make the head. ON CONFLICT DO NOTHING lets two first writers on
        # PostgreSQL both go on (the second waits for the first's commit, then finds its row)
        # instead of one failing on the primary key.
        insert = _dialect_insert(session)(AuditChainHead).values(id=_HEAD_ID, last_seq=0, last_hash=GENESIS_HASH)
        session.execute(insert.on_conflict_do_nothing(index_elements=["id"]))
        head = session.scalar(locked)
    return head


def _dialect_insert(session: orm.Session):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


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


@dataclasses.dataclass(frozen=True)
class Origin:
    """Who causes an action and from where, handed to a service that commits its own
    transaction so it can record the event in that transaction (``runs.cancel_run``)."""

    actor: User | str | None
    address: str = ""
    via: str = ""  # how, when it matters: "API token prts_ab12", "prts CLI"

    def record(self, session: orm.Session, action: str, *, target: str = "", project: Project | None = None,
               organisation: Organisation | None = None, outcome: Outcome = "success",
               detail: str = "") -> AuditEvent:
        if self.via:
            detail = f"{detail} (via {self.via})" if detail else f"via {self.via}"
        return record(session, action, actor=self.actor, target=target, project=project,
                      organisation=organisation, address=self.address, outcome=outcome, detail=detail)


SYSTEM = Origin("system")


def url_without_secrets(url: str) -> str:
    """A URL fit for the trail: without user:password, query or fragment, which often carry
    tokens (``https://x:TOKEN@host/...``, ``?token=...``)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable URL)"
    host = f"[{host}]" if ":" in host else host
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path, "", ""))
