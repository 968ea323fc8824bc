"""Shipping the audit outbox to the analytics store.

The main database is the source of truth; the analytics copy is for long-range queries.
Rows go in ``seq`` order, a batch at a time: first the copy is inserted, then the batch is
stamped ``shipped_at``. A crash between the two leaves the batch unstamped, and the next
run skips the seqs the store already holds, so a re-ship never duplicates. While the store
is down nothing is stamped and the rows wait in the outbox.

One shipper at a time (the periodic task on every worker, ``prts audit ship``): on
PostgreSQL a session advisory lock, on SQLite (one host) a file lock beside the database;
both are released by the operating system when their holder dies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import pathlib
from typing import Iterator, Sequence

import sqlalchemy as sa

from appliance.db import Database
from appliance.models import AuditEvent
from appliance.models.base import utcnow
from appliance.storage.analytics import Analytics

TABLE = "audit_events"
COLUMNS = ("seq", "at", "at_ms", "actor", "actor_id", "action", "target", "project_id", "organisation_id",
           "address", "outcome", "detail", "prev_hash", "hash")
BATCH_SIZE = 500
_ADVISORY_LOCK_KEY = 0x70727473_61756474  # "prts" "audt": any constant unique to this lock


@dataclasses.dataclass
class ShipResult:
    shipped: int = 0  # rows stamped by this run
    skipped: int = 0  # of those, already in the store (a re-ship after a crash)
    busy: bool = False  # another shipper held the lock; this run did nothing


def copy_values(event: AuditEvent) -> tuple:
    """The analytics row for an event, in ``COLUMNS`` order (DateTime + milliseconds)."""
    at = event.at
    return (event.seq, at.replace(microsecond=0), at.microsecond // 1000, event.actor, event.actor_id, event.action,
            event.target, event.project_id, event.organisation_id, event.address, event.outcome, event.detail,
            event.prev_hash, event.hash)


def seqs_in_store(analytics: Analytics, low: int, high: int) -> set[int]:
    rows = analytics.query(f"SELECT seq FROM {TABLE} WHERE seq >= %(low)s AND seq <= %(high)s",
                           {"low": low, "high": high})
    return {row[0] for row in rows}


def insert_copies(analytics: Analytics, events: Sequence[AuditEvent]) -> int:
    return analytics.insert(TABLE, COLUMNS, [copy_values(e) for e in events])


def ship(db: Database, analytics: Analytics, *, batch_size: int = BATCH_SIZE) -> ShipResult:
    """Copy every unshipped event to the store; raises ``AnalyticsError`` when the store
    cannot be reached (the rows not yet stamped stay in the outbox)."""
    result = ShipResult()
    with _exclusive(db) as acquired:
        if not acquired:
            result.busy = True
            return result
        while True:
            with db.session() as session:
                batch = list(session.scalars(sa.select(AuditEvent).where(AuditEvent.shipped_at.is_(None))
                                             .order_by(AuditEvent.seq).limit(batch_size)))
            if not batch:
                return result
            present = seqs_in_store(analytics, batch[0].seq, batch[-1].seq) & {e.seq for e in batch}
            insert_copies(analytics, [e for e in batch if e.seq not in present])
            with db.session() as session:
                session.execute(sa.update(AuditEvent).where(AuditEvent.id.in_([e.id for e in batch]))
                                .values(shipped_at=utcnow()))
            result.shipped += len(batch)
            result.skipped += len(present)
            if len(batch) < batch_size:
                return result


def unshipped_count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                              .where(AuditEvent.shipped_at.is_(None)))


@contextlib.contextmanager
def _exclusive(db: Database) -> Iterator[bool]:
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            acquired = conn.scalar(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
            try:
                yield bool(acquired)
            finally:
                if acquired:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        return
    database = db.engine.url.database
    lock_path = pathlib.Path(database + ".audit-ship.lock") if database and database != ":memory:" else None
    if lock_path is None:
        yield True  # an in-memory database lives in one process
        return
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
