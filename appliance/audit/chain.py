"""Verifying the audit trail: the hash chain in the main database and the shipped copies.

The walk goes in ``seq`` order a batch at a time and stops at the first problem, naming
its seq and what is wrong:

- ``changed``: the event's fields no longer hash to its stored hash;
- ``removed``: seqs are missing and the next event does not link to the one before;
- ``reordered``: the event links to an event that exists but is not the one before it;
- ``gap``: seqs are skipped although the events still link (the numbers were altered);
- ``broken``: the event links to no event at all (its ``prev_hash`` was altered);
- ``head``: the chain head row disagrees with the last event;
- ``missing`` / ``different``: a shipped event is absent from the analytics store, or its
  copy there differs.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import sqlalchemy as sa

from appliance.audit.shipping import COLUMNS, TABLE, copy_values
from appliance.audit.trail import GENESIS_HASH, event_hash
from appliance.db import Database
from appliance.models import AuditChainHead, AuditEvent
from appliance.storage.analytics import Analytics

BATCH_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class Problem:
    seq: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.kind}: {self.message}"


@dataclasses.dataclass
class Verification:
    verified: int = 0  # events whose hash and link were checked
    compared: int = 0  # shipped events compared with their analytics copy
    problem: Problem | None = None


def _events(db: Database, *, up_to: int, shipped_only: bool = False, batch_size: int) -> Iterator[list[AuditEvent]]:
    after = 0
    while True:
        query = sa.select(AuditEvent).where(AuditEvent.seq > after, AuditEvent.seq <= up_to)
        if shipped_only:
            query = query.where(AuditEvent.shipped_at.is_not(None))
        with db.session() as session:
            batch = list(session.scalars(query.order_by(AuditEvent.seq).limit(batch_size)))
        if not batch:
            return
        yield batch
        after = batch[-1].seq


def _head(db: Database) -> tuple[int, str, int]:
    """The head's last seq and hash, and the highest seq present, read together."""
    with db.session() as session:
        head = session.get(AuditChainHead, 1)
        highest = session.scalar(sa.select(sa.func.max(AuditEvent.seq))) or 0
    if head is None:
        return 0, GENESIS_HASH, highest
    return head.last_seq, head.last_hash, highest


def _broken_link(db: Database, event: AuditEvent, expected_seq: int, previous_hash: str) -> Problem:
    if event.seq != expected_seq:
        missing = f"{expected_seq}" if event.seq == expected_seq + 1 else f"{expected_seq}..{event.seq - 1}"
        return Problem(expected_seq, "removed", f"event {missing} is missing: seq {event.seq} does not link "
                                                f"to the event before it")
    with db.session() as session:
        linked = session.scalar(sa.select(AuditEvent.seq).where(AuditEvent.hash == event.prev_hash).limit(1))
    if linked is not None:
        return Problem(event.seq, "reordered", f"it links to the event now at seq {linked}, "
                                               f"not to seq {expected_seq - 1}")
    return Problem(event.seq, "broken", f"its prev_hash matches no event (seq {expected_seq - 1} "
                                        f"or its own link was altered)")


def verify_chain(db: Database, *, batch_size: int = BATCH_SIZE) -> Verification:
    result = Verification()
    head_seq, head_hash, highest = _head(db)
    if highest > head_seq:
        result.problem = Problem(head_seq + 1, "head", f"events run to seq {highest} but the chain head "
                                                       f"ends at seq {head_seq}")
        return result
    expected, previous_hash = 1, GENESIS_HASH
    for batch in _events(db, up_to=head_seq, batch_size=batch_size):
        for event in batch:
            if event.prev_hash != previous_hash:
                result.problem = _broken_link(db, event, expected, previous_hash)
                return result
            if event.seq != expected:
                result.problem = Problem(expected, "gap", f"seqs {expected}..{event.seq - 1} are skipped although "
                                                          f"seq {event.seq} links to seq {expected - 1}")
                return result
            if event_hash(event) != event.hash:
                result.problem = Problem(event.seq, "changed", "its fields do not match its hash")
                return result
            result.verified += 1
            expected, previous_hash = event.seq + 1, event.hash
    if expected - 1 != head_seq:
        result.problem = Problem(expected, "removed", f"the chain head ends at seq {head_seq} but the last "
                                                      f"event is seq {expected - 1}")
    elif previous_hash != head_hash:
        result.problem = Problem(head_seq, "head", "the chain head's hash differs from the last event's")
    return result


def compare_shipped(db: Database, analytics: Analytics, *, batch_size: int = BATCH_SIZE) -> Verification:
    """Each event stamped as shipped against its copy in the store (raises ``AnalyticsError``
    when the store cannot be reached)."""
    result = Verification()
    head_seq, _, _ = _head(db)
    names = ", ".join(COLUMNS)
    for batch in _events(db, up_to=head_seq, shipped_only=True, batch_size=batch_size):
        copies: dict[int, list[tuple]] = {}
        for row in analytics.query(f"SELECT {names} FROM {TABLE} WHERE seq >= %(low)s AND seq <= %(high)s",
                                   {"low": batch[0].seq, "high": batch[-1].seq}):
            copies.setdefault(row[0], []).append(tuple(row))
        for event in batch:
            found = copies.get(event.seq)
            if not found:
                result.problem = Problem(event.seq, "missing", "shipped, but not in the analytics store")
                return result
            expected = copy_values(event)
            for copy in found:
                if copy != expected:
                    fields = [name for name, a, b in zip(COLUMNS, copy, expected) if a != b]
                    result.problem = Problem(event.seq, "different",
                                             f"the analytics copy differs in {', '.join(fields)}")
                    return result
            result.compared += 1
    return result
