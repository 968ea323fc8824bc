from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class LogChunk(Base):
    """One stored piece of a job attempt's log: processed text (masked, escape-free) in the
    object store under ``object_key``; this row indexes it by line and byte."""

    __tablename__ = "log_chunks"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    job_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("pipeline_jobs.id", ondelete="CASCADE"))
    attempt: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    seq: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    first_line: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)  # 1-based number of its first line
    line_count: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    offset: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)  # of its first byte in the whole log
    size: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    raw_end: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)  # spool bytes consumed up to its end
    sha256: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    object_key: orm.Mapped[str] = orm.mapped_column(sa.String(300))
    # The chunk's style runs (packed little-endian uint64s, RUN_FIELDS per run, offsets
    # relative to the chunk), or None when it has no styled text.
    styles: orm.Mapped[bytes | None] = orm.mapped_column(sa.LargeBinary)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint(job_id, attempt, seq),)
