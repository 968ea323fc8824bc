"""Reading the trail back: filters, keyset pages and CSV rows for the audit pages.

Reads the main database's table, the source of truth that is always current (the
analytics copy lags by up to a shipping interval).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Iterator, Mapping

import sqlalchemy as sa

from appliance.db import Database
from appliance.errors import ValidationError
from appliance.models import AuditEvent, Organisation, Project

OUTCOMES = ("success", "failure", "denied")
MAX_TEXT = 255
PAGE_SIZE = 50
EXPORT_BATCH = 1000
CSV_HEADER = ("seq", "time_utc", "actor", "action", "target", "project", "address", "outcome", "detail", "hash")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclasses.dataclass(frozen=True)
class AuditFilter:
    actor: str = ""  # the actor's name, whole, any case
    action: str = ""  # a prefix: "run." finds run.started and run.canceled
    target: str = ""  # a substring
    since: dt.date | None = None  # from this day (UTC) on
    until: dt.date | None = None  # to this day (UTC), inclusive
    outcome: str = ""
    project_id: int | None = None  # set by the per-project view, never by the form

    @classmethod
    def from_args(cls, args: Mapping[str, str], project_id: int | None = None) -> "AuditFilter":
        """The filter from query arguments; raises ``ValidationError`` naming the first bad one."""
        text = {}
        for name in ("actor", "action", "target"):
            value = (args.get(name) or "").strip()
            if len(value) > MAX_TEXT:
                raise ValidationError(name, f"must be at most {MAX_TEXT} characters")
            text[name] = value
        outcome = (args.get("outcome") or "").strip()
        if outcome and outcome not in OUTCOMES:
            raise ValidationError("outcome", f"must be one of {', '.join(OUTCOMES)}")
        since, until = _date(args, "since"), _date(args, "until")
        if since and until and since > until:
            raise ValidationError("until", "must not be before the From date")
        return cls(since=since, until=until, outcome=outcome, project_id=project_id, **text)

    def clauses(self) -> list:
        where = []
        if self.actor:
            where.append(sa.func.lower(AuditEvent.actor) == self.actor.lower())
        if self.action:
            where.append(AuditEvent.action.startswith(self.action, autoescape=True))
        if self.target:
            where.append(AuditEvent.target.contains(self.target, autoescape=True))
        if self.since:
            where.append(AuditEvent.at >= _midnight(self.since))
        if self.until:
            where.append(AuditEvent.at < _midnight(self.until + dt.timedelta(days=1)))
        if self.outcome:
            where.append(AuditEvent.outcome == self.outcome)
        if self.project_id is not None:
            where.append(AuditEvent.project_id == self.project_id)
        return where

    def query_args(self) -> dict[str, str]:
        """The filter as query arguments (for links to the next page and the export)."""
        values = {"actor": self.actor, "action": self.action, "target": self.target, "outcome": self.outcome,
                  "since": self.since.isoformat() if self.since else "",
                  "until": self.until.isoformat() if self.until else ""}
        return {k: v for k, v in values.items() if v}


def _date(args: Mapping[str, str], name: str) -> dt.date | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError(name, "must be a date written YYYY-MM-DD") from None


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


@dataclasses.dataclass
class Page:
    events: list[AuditEvent]
    older: int | None  # the ``before`` argument of the next (older) page, None on the last page
    projects: dict[int, str]  # project id -> path, for the events shown


def page(session, audit_filter: AuditFilter, before: int | None = None, size: int = PAGE_SIZE) -> Page:
    """Newest first, ``size`` events with seq below ``before`` (keyset: no OFFSET to grow slow)."""
    query = sa.select(AuditEvent).where(*audit_filter.clauses())
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    rows = list(session.scalars(query.order_by(AuditEvent.seq.desc()).limit(size + 1)))
    older = rows[size - 1].seq if len(rows) > size else None
    events = rows[:size]
    return Page(events, older, project_paths(session, {e.project_id for e in events if e.project_id}))


def project_paths(session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(sa.select(Project.id, Organisation.name, Project.name).join(Project.organisation)
                           .where(Project.id.in_(ids)))
    return {pid: f"{org}/{name}" for pid, org, name in rows}


def neutralise(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def csv_rows(db: Database, audit_filter: AuditFilter, batch_size: int = EXPORT_BATCH) -> Iterator[tuple[str, ...]]:
    """The header, then every matching event oldest first, a batch per short transaction
    (an export of a long trail never holds a read transaction open for its whole length)."""
    yield CSV_HEADER
    after = 0
    paths: dict[int, str] = {}
    while True:
        with db.session() as session:
            batch = list(session.scalars(sa.select(AuditEvent).where(*audit_filter.clauses(), AuditEvent.seq > after)
                                         .order_by(AuditEvent.seq).limit(batch_size)))
            missing = {e.project_id for e in batch if e.project_id and e.project_id not in paths}
            paths.update(project_paths(session, missing))
        if not batch:
            return
        for e in batch:
            at = e.at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            cells = (str(e.seq), at, e.actor, e.action, e.target, paths.get(e.project_id, ""), e.address,
                     e.outcome, e.detail, e.hash)
            yield tuple(neutralise(c) for c in cells)
        after = batch[-1].seq
