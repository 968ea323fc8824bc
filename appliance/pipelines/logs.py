"""Job logs: from the spool file a job writes, through the native log engine, into stored
chunks (object store + a ``LogChunk`` row each) and live lines on pub/sub; and back out.

Writing. A job attempt's processes write their output straight into a spool file on local
disk; ``LogPump`` tails it from a thread. It feeds the native ``LogEngine`` whole raw lines
only (a raw line longer than ``MAX_PARTIAL_LINE`` without a newline is fed anyway) and
stores lines only up to where a raw line ended, so each chunk's ``raw_end`` (the spool
offset it accounts for) is an exact point for a later pump to resume from. Completed
lines are published at once on ``job-log:<job_id>`` (before they are stored: latency), and
gathered into a chunk that is stored when it reaches ``CHUNK_BYTES`` of text or
``FLUSH_SECONDS`` after its first line, and at ``stop()``. Every line carries its 1-based
number, so a viewer merges stored and live lines by number.

A chunk is the processed text (UTF-8, masked, escape-free, one ``\\n`` per line) under
``logs/<job_id>/<attempt>/<seq:08d>``, and a row with its sha256, first line, line count,
byte offset and size in the whole log, ``raw_end`` and its style runs. The object is
written before the row, so a row always names an object that exists.

When a worker dies, ``salvage()`` resumes from the last stored chunk's ``raw_end`` and
stores the rest of the spool, so every byte the job wrote reaches the log.

Reading. ``LogReader`` finds lines through the chunk rows, checks each chunk's sha256 when
it fetches it and keeps a few fetched chunks in an LRU cache.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import sys
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from appliance.models import LogChunk, PipelineJob
from appliance.native import LogEngine, LogOutput, line_starts
from appliance.storage.objects import ObjectNotFound

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024  # a chunk is stored once its text reaches this size ...
FLUSH_SECONDS = 0.5  # ... or this long after its first line, whichever comes first
POLL_SECONDS = 0.02  # how often the pump looks at the spool when it has no new data
READ_BYTES = 1 << 20  # spool bytes read at once
FEED_BYTES = 64 * 1024  # raw bytes fed at once (whole lines); chunks are cut between feeds
RETRY_SECONDS = 0.5  # after a failed store, the next try comes this much later
QUIET_SECONDS = 0.25  # after a publish nobody received, publish nothing for this long
MAX_PARTIAL_LINE = LogEngine.DEFAULT_MAX_LINE  # a line without "\n" longer than this is fed anyway
RUN_FIELDS = LogOutput.RUN_FIELDS
_LITTLE = sys.byteorder == "little"


class LogError(Exception):
    """A job log could not be written or read."""


class LogCorruptError(LogError):
    """A stored chunk is missing or does not match the checksum its row records."""


@dataclasses.dataclass(frozen=True)
class LogTotals:
    """The stored log of one job attempt: processed bytes, lines, and whether the cap cut it."""

    bytes: int
    lines: int
    truncated: bool


@dataclasses.dataclass(frozen=True)
class LogLine:
    """One stored line: its 1-based number, text without the newline, and style runs
    ``(start, length, fg, bg, flags)`` with start and length in characters of ``text``."""

    number: int
    text: str
    runs: tuple[tuple[int, int, int, int, int], ...] = ()


def log_channel(job_id: int) -> str:
    """The pub/sub channel carrying a job's live log lines (every attempt)."""
    return f"job-log:{job_id}"


def chunk_key(job_id: int, attempt: int, seq: int) -> str:
    return f"logs/{job_id}/{attempt}/{seq:08d}"


def truncation_marker(max_bytes: int) -> str:
    return (f"[log truncated: this job's log reached the {_size(max_bytes)} limit; "
            "later output was not stored]")


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def pack_runs(runs: array) -> bytes | None:
    """Style runs as stored in ``LogChunk.styles``: little-endian uint64s, or None when empty."""
    if not runs:
        return None
    if _LITTLE:
        return runs.tobytes()
    swapped = array("Q", runs)
    swapped.byteswap()
    return swapped.tobytes()


def unpack_runs(data: bytes | None) -> array:
    runs = array("Q")
    if data:
        runs.frombytes(data)
        if not _LITTLE:
            runs.byteswap()
    return runs


def _line_runs(line: bytes, text: str, runs: list) -> list[list[int]]:
    """Byte-offset runs of one line as character-offset runs of its decoded text."""
    if len(line) == len(text):  # ASCII: bytes are characters
        return runs
    out = []
    for start, length, fg, bg, flags in runs:
        c_start = len(line[:start].decode("utf-8", "replace"))
        c_len = len(line[start:start + length].decode("utf-8", "replace"))
        out.append([c_start, c_len, fg, bg, flags])
    return out


def split_lines(text: bytes, starts, runs, base: int = 0) -> list[tuple[str, list[list[int]]]]:
    """Cut processed text into ``(line text, runs)`` pairs. ``starts`` (the line starts) and
    ``runs`` (flat RUN_FIELDS-tuples) are engine offsets, ``base`` being the offset of
    ``text``'s first byte; the runs of each line come out relative to it, in characters."""
    decoded = text.decode("utf-8", "replace")  # the engine's output is valid UTF-8
    texts = decoded.split("\n")[:-1]
    per_line: list[list] = [[] for _ in texts]
    for at in range(0, len(runs), RUN_FIELDS):
        start = runs[at]
        index = bisect_right(starts, start) - 1
        per_line[index].append([start - starts[index], runs[at + 1], runs[at + 2], runs[at + 3], runs[at + 4]])
    ascii_only = len(decoded) == len(text)
    out = []
    for index, line_text in enumerate(texts):
        line_runs = per_line[index]
        if line_runs and not ascii_only:
            begin = starts[index] - base
            line_runs = _line_runs(text[begin:begin + len(line_text.encode())], line_text, line_runs)
        out.append((line_text, line_runs))
    return out


# ---- writing -----------------------------------------------------------------------------


class LogPump:
    """Tails a job attempt's spool file into stored chunks and live lines.

    ``start()`` starts the tailing thread; ``stop()`` drains the spool to its end, finishes
    the engine, stores the last chunk and returns the totals (it also works without
    ``start()``, which is how ``salvage`` runs). The pump continues after any chunks already
    stored for the attempt; ``start_offset`` is where it starts reading the spool, which
    for a resumed log is the last chunk's ``raw_end``.

    Every stored chunk ends where a raw line ended (or where the spool ended, for the last
    chunk of a finished log), so its ``raw_end`` is an exact resume point: a fresh engine
    fed the spool from there produces exactly the lines that follow. The pieces of a raw
    line longer than MAX_PARTIAL_LINE are fed (and published) as they come, but stored
    only once that line has ended.
    """

    def __init__(self, app, job_id: int, attempt: int, spool_path: Path, secrets: list[str],
                 start_offset: int = 0) -> None:
        if start_offset < 0:
            raise ValueError(f"start_offset must be >= 0, got {start_offset}")
        self.app, self.job_id, self.attempt = app, job_id, attempt
        self.spool_path = Path(spool_path)
        self.engine = LogEngine(secrets)
        self.max_bytes = app.config.pipelines.max_log_bytes
        self.chunk_bytes, self.flush_seconds = CHUNK_BYTES, FLUSH_SECONDS
        self._channel = log_channel(job_id)
        self._lock = threading.Lock()  # the thread and stop() never work the pump at once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._totals: LogTotals | None = None
        self._finished = False
        self._file = None
        self._read_pos = self._fed_pos = start_offset
        self._raw = bytearray()  # read from the spool, not fed yet (a partial line)
        self._engine_pos = 0  # output bytes the engine has produced so far
        # What is stored already (the last stored chunk) ...
        self._seq, self._next_line, self._stored_bytes, self._truncated = self._stored_state()
        # ... and the lines gathered since: text, runs (offsets relative to the text), count,
        # when the first came, and the last point where a raw line ended (text length, lines,
        # runs length, spool offset): a chunk is stored up to that point only.
        self._buf = bytearray()
        self._buf_runs = array("Q")
        self._buf_lines = 0
        self._buf_since: float | None = None
        self._boundary = (0, 0, 0, start_offset)
        self._quiet_until = 0.0  # publish nothing before this (monotonic time): nobody listened
        self._retry_at = 0.0  # store nothing before this: storing failed

    # -- public --

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the pump was started already")
        self._thread = threading.Thread(target=self._tail, name=f"log-pump-{self.job_id}-{self.attempt}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> LogTotals:
        """Drain the spool to EOF, finish the engine, store the final chunk; returns the totals.

        Raises LogError when the final chunk cannot be stored after a few tries; the spool
        file still holds everything, so ``salvage`` can store it later."""
        if self._totals is not None:
            return self._totals
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if not self._finished:  # a stop() that failed to store may be called again
                self._drain(final=True)
                self._accept(self.engine.finish())
                self._finished = True
                self._boundary = (len(self._buf), self._buf_lines, len(self._buf_runs), self._fed_pos)
            self._flush_retrying()
            if self._file is not None:
                self._file.close()
            self._totals = LogTotals(self._stored_bytes, self._next_line - 1, self._truncated)
            return self._totals

    def abandon(self) -> None:
        """Stop tailing and store nothing more, as a worker's death would (for tests, and
        for a worker that must leave the log to ``salvage``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._file is not None:
            self._file.close()

    @property
    def totals(self) -> LogTotals:
        """What is stored so far."""
        return LogTotals(self._stored_bytes, self._next_line - 1 - self._buf_lines, self._truncated)

    # -- the thread --

    def _tail(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    busy = self._drain(final=False)
                    if self._buf_lines and time.monotonic() - self._buf_since >= self.flush_seconds:
                        self._try_flush()
            except Exception:  # the spool unreadable for a moment, say: try again
                log.warning("log pump of job %s attempt %s failed; retrying", self.job_id, self.attempt,
                            exc_info=True)
                busy = False
                self._stop.wait(0.5)
            if not busy:
                self._stop.wait(POLL_SECONDS)

    # -- reading the spool --

    def _drain(self, *, final: bool) -> bool:
        """Read what the spool has, feed its whole lines (all of it when ``final``), store
        full chunks. Returns whether anything was read."""
        if self._file is None:
            try:
                self._file = open(self.spool_path, "rb")
            except FileNotFoundError:
                return False
        read_any = False
        while True:
            self._file.seek(self._read_pos)
            block = self._file.read(READ_BYTES)
            if block:
                read_any = True
                self._read_pos += len(block)
                self._raw += block
            cut = self._raw.rfind(b"\n") + 1
            if final and not block:
                cut = len(self._raw)
            elif not cut and len(self._raw) > MAX_PARTIAL_LINE:
                cut = len(self._raw)
            if cut:
                self._feed_lines(cut)
            if not block or not final:
                return read_any

    def _feed_lines(self, cut: int) -> None:
        """Feed ``self._raw[:cut]`` in pieces cut after newlines, so a chunk can be stored
        between any two feeds, and store a chunk when one is full."""
        data = bytes(self._raw[:cut])
        # Small feeds for small chunks, so a chunk overshoots its size by a quarter at most.
        feed_bytes = int(min(FEED_BYTES, max(1024, self.chunk_bytes // 4)))
        pos = 0
        while pos < len(data):
            end = pos + feed_bytes
            if end >= len(data):
                end = len(data)
            else:
                newline = data.rfind(b"\n", pos, end)
                if newline < 0:
                    newline = data.find(b"\n", end)
                end = len(data) if newline < 0 else newline + 1
            piece = data[pos:end]
            pos = end
            # Forget each piece as it is fed: if storing fails below, the rest stays to feed.
            del self._raw[:len(piece)]
            self._fed_pos += len(piece)
            if self._truncated:  # keep draining the spool so the job can go on
                continue
            self._accept(self.engine.feed(piece))
            if piece.endswith(b"\n") or self._truncated:
                self._boundary = (len(self._buf), self._buf_lines, len(self._buf_runs), self._fed_pos)
            if len(self._buf) >= self.chunk_bytes:
                self._try_flush()

    # -- lines --

    def _accept(self, out: LogOutput) -> None:
        """Take the engine's completed lines: apply the cap, publish, add to the chunk."""
        base = self._engine_pos
        self._engine_pos += len(out.text)
        if self._truncated or not out.text:
            return
        text, starts, runs = out.text, out.line_starts, out.runs
        room = self.max_bytes - self._stored_bytes - len(self._buf)
        marker = None
        if len(text) > room:
            # Keep the lines that fit whole, then one marker line; drop the rest.
            keep = count = 0
            for i in range(len(starts)):
                end = (starts[i + 1] - base) if i + 1 < len(starts) else len(text)
                if end > room:
                    break
                keep, count = end, i + 1
            text, starts = text[:keep], starts[:count]
            kept_runs = array("Q")
            for at in range(0, len(runs), RUN_FIELDS):
                if runs[at] - base < keep:
                    kept_runs.extend(runs[at:at + RUN_FIELDS])
            runs = kept_runs
            marker = truncation_marker(self.max_bytes).encode() + b"\n"
            self._truncated = True
            log.info("log of job %s attempt %s reached the %s-byte cap", self.job_id, self.attempt,
                     self.max_bytes)
        count = len(starts) + (marker is not None)
        if not count:
            return
        if time.monotonic() >= self._quiet_until:
            lines = split_lines(text, starts, runs, base)
            if marker is not None:
                lines.append((marker[:-1].decode(), []))
            self._publish(lines)
        shift = len(self._buf) - base  # engine offsets -> offsets in the chunk
        self._buf += text
        runs = array("Q", runs)
        for at in range(0, len(runs), RUN_FIELDS):
            runs[at] += shift
        self._buf_runs.extend(runs)
        if marker is not None:
            self._buf += marker
        if not self._buf_lines:
            self._buf_since = time.monotonic()
        self._buf_lines += count
        self._next_line += count

    def _publish(self, lines: list) -> None:
        message = json.dumps({"attempt": self.attempt, "first_line": self._next_line, "lines": lines},
                             ensure_ascii=False, separators=(",", ":"))
        try:
            receivers = self.app.pubsub.publish(self._channel, message)
        except Exception:  # live lines are best effort: viewers fall back to the stored ones
            log.debug("could not publish log lines of job %s", self.job_id, exc_info=True)
            receivers = 0
        if not receivers:
            # Nobody listens (or, embedded, the viewers are in another process): spare the
            # work of cutting and encoding lines for a while. A viewer arriving meanwhile
            # reads the stored lines first anyway.
            self._quiet_until = time.monotonic() + QUIET_SECONDS

    # -- storing --

    def _stored_state(self) -> tuple[int, int, int, bool]:
        """(next seq, next line number, stored bytes, truncated) from the last stored chunk."""
        with self.app.db.session() as s:
            last = s.scalars(sa.select(LogChunk).where(LogChunk.job_id == self.job_id,
                                                       LogChunk.attempt == self.attempt)
                             .order_by(LogChunk.seq.desc()).limit(1)).first()
        if last is None:
            return 0, 1, 0, False
        # A log the cap cut ends with the marker line: nothing more may be stored after it.
        marker = b"\n" + truncation_marker(self.max_bytes).encode() + b"\n"
        tail = self.app.objects.get_range(last.object_key, max(0, last.size - len(marker)), len(marker))
        truncated = (b"\n" + tail if len(tail) < len(marker) else tail) == marker
        return last.seq + 1, last.first_line + last.line_count, last.offset + last.size, truncated

    def _flush(self) -> None:
        """Store the gathered lines up to the last raw line end as the next chunk."""
        size, lines, run_values, raw_end = self._boundary
        if not lines:
            return
        data = bytes(self._buf[:size])
        digest = hashlib.sha256(data).hexdigest()
        key = chunk_key(self.job_id, self.attempt, self._seq)
        row = dict(job_id=self.job_id, attempt=self.attempt, seq=self._seq,
                   first_line=self._next_line - self._buf_lines, line_count=lines,
                   offset=self._stored_bytes, size=size, raw_end=raw_end, sha256=digest,
                   object_key=key, styles=pack_runs(self._buf_runs[:run_values]))
        self.app.objects.put(key, data)
        total_bytes, total_lines = self._stored_bytes + size, row["first_line"] + lines - 1
        try:
            with self.app.db.session() as s:
                s.add(LogChunk(**row))
                s.flush()
                # Only the log columns: status and version belong to the dispatcher.
                table = PipelineJob.__table__
                s.execute(sa.update(table).where(table.c.id == self.job_id, table.c.attempt == self.attempt)
                          .values(log_bytes=total_bytes, log_lines=total_lines, log_truncated=self._truncated))
        except IntegrityError:
            # An earlier try may have committed before its answer was lost: the same chunk
            # is then stored already, and anything else is a real conflict.
            with self.app.db.session() as s:
                existing = s.scalar(sa.select(LogChunk.sha256).where(
                    LogChunk.job_id == self.job_id, LogChunk.attempt == self.attempt, LogChunk.seq == self._seq))
            if existing != digest:
                raise
        self._seq += 1
        self._stored_bytes = total_bytes
        # Keep what follows the boundary: the pieces of a long line still being written.
        del self._buf[:size]
        rest = array("Q", self._buf_runs[run_values:])
        for at in range(0, len(rest), RUN_FIELDS):
            rest[at] -= size
        self._buf_runs = rest
        self._buf_lines -= lines
        self._buf_since = time.monotonic() if self._buf_lines else None
        self._boundary = (0, 0, 0, raw_end)

    def _try_flush(self) -> None:
        """Store a chunk unless storing failed a moment ago; on failure keep the lines (the
        cap bounds them) and try again after RETRY_SECONDS."""
        if time.monotonic() < self._retry_at:
            return
        try:
            self._flush()
        except Exception:  # any backend failure (S3 or the database unreachable)
            log.warning("storing the log of job %s attempt %s failed; retrying", self.job_id, self.attempt,
                        exc_info=True)
            self._retry_at = time.monotonic() + RETRY_SECONDS

    def _flush_retrying(self, tries: int = 4) -> None:
        for attempt in range(tries):
            try:
                self._flush()
                return
            except Exception as exc:  # any backend failure: the spool still holds the output
                if attempt == tries - 1:
                    raise LogError(f"could not store the log of job {self.job_id} attempt {self.attempt}: "
                                   f"{exc}") from exc
                log.warning("storing the log of job %s failed; retrying", self.job_id, exc_info=True)
                time.sleep(0.25 * 2 ** attempt)


def last_raw_end(app, job_id: int, attempt: int) -> int:
    """The spool offset the stored chunks of an attempt account for (0 when none)."""
    with app.db.session() as s:
        value = s.scalar(sa.select(LogChunk.raw_end).where(LogChunk.job_id == job_id, LogChunk.attempt == attempt)
                         .order_by(LogChunk.seq.desc()).limit(1))
    return value or 0


def salvage(app, job_id: int, attempt: int, spool_path: Path, secrets: list[str]) -> LogTotals:
    """Store what a dead worker's pump had not stored: resume from the last stored chunk's
    ``raw_end`` and process the rest of the spool. Deletes nothing (the caller removes
    the spool)."""
    pump = LogPump(app, job_id, attempt, spool_path, secrets, start_offset=last_raw_end(app, job_id, attempt))
    return pump.stop()


# ---- reading -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Row:
    seq: int
    first_line: int
    line_count: int
    offset: int
    size: int
    sha256: str
    object_key: str
    styles: bytes | None


class _Chunk:
    __slots__ = ("row", "data", "starts", "runs", "run_starts")

    def __init__(self, row: _Row, data: bytes) -> None:
        self.row, self.data = row, data
        self.starts = line_starts(data)
        self.runs = unpack_runs(row.styles)
        self.run_starts = self.runs[0::RUN_FIELDS]

    def line(self, index: int) -> tuple[str, tuple]:
        begin = self.starts[index]
        end = (self.starts[index + 1] if index + 1 < len(self.starts) else len(self.data)) - 1
        raw = self.data[begin:end]
        text = raw.decode("utf-8", "replace")
        r = bisect_left(self.run_starts, begin)
        runs = []
        while r < len(self.run_starts) and self.run_starts[r] < end:
            at = r * RUN_FIELDS
            runs.append([self.runs[at] - begin, self.runs[at + 1], self.runs[at + 2], self.runs[at + 3],
                         self.runs[at + 4]])
            r += 1
        if runs:
            runs = _line_runs(raw, text, runs)
        return text, tuple(tuple(run) for run in runs)


class LogReader:
    """Lines of one job attempt's stored log, found through the chunk rows.

    Each fetched chunk is checked against its sha256 (``LogCorruptError`` names the chunk
    when it does not match or is missing); the last CACHE_CHUNKS fetched chunks are kept.
    Chunks stored after the reader was made are picked up by ``refresh()``, which
    ``line_count()`` and ``tail()`` call.
    """

    CACHE_CHUNKS = 8

    def __init__(self, app, job_id: int, attempt: int) -> None:
        self.app, self.job_id, self.attempt = app, job_id, attempt
        self._rows: list[_Row] = []
        self._firsts: list[int] = []
        self._cache: collections.OrderedDict[int, _Chunk] = collections.OrderedDict()
        self.refresh()

    def refresh(self) -> None:
        after = self._rows[-1].seq if self._rows else -1
        with self.app.db.session() as s:
            rows = s.execute(sa.select(LogChunk.seq, LogChunk.first_line, LogChunk.line_count, LogChunk.offset,
                                       LogChunk.size, LogChunk.sha256, LogChunk.object_key, LogChunk.styles)
                             .where(LogChunk.job_id == self.job_id, LogChunk.attempt == self.attempt,
                                    LogChunk.seq > after)
                             .order_by(LogChunk.seq)).all()
        for row in rows:
            item = _Row(*row)
            self._rows.append(item)
            self._firsts.append(item.first_line)

    @property
    def _known_lines(self) -> int:
        last = self._rows[-1] if self._rows else None
        return last.first_line + last.line_count - 1 if last else 0

    def line_count(self) -> int:
        self.refresh()
        return self._known_lines

    def byte_count(self) -> int:
        self.refresh()
        last = self._rows[-1] if self._rows else None
        return last.offset + last.size if last else 0

    def lines(self, start: int, count: int) -> list[LogLine]:
        """Up to ``count`` lines from line number ``start`` (1-based); fewer at the end."""
        if start < 1 or count < 0:
            raise ValueError(f"start must be >= 1 and count >= 0, got start={start} count={count}")
        if start + count - 1 > self._known_lines:
            self.refresh()
        stop = min(start + count, self._known_lines + 1)
        out: list[LogLine] = []
        number = start
        while number < stop:
            index = bisect_right(self._firsts, number) - 1
            row = self._rows[index]
            chunk = self._chunk(row)
            last = min(stop, row.first_line + row.line_count)
            for n in range(number, last):
                text, runs = chunk.line(n - row.first_line)
                out.append(LogLine(n, text, runs))
            number = last
        return out

    def tail(self, count: int) -> list[LogLine]:
        total = self.line_count()
        start = max(1, total - count + 1)
        return self.lines(start, total - start + 1) if total else []

    def iter_text(self) -> Iterator[bytes]:
        """The whole stored text, chunk by chunk (each checked), for a raw download."""
        self.refresh()
        for row in list(self._rows):
            cached = self._cache.get(row.seq)
            yield cached.data if cached is not None else self._fetch(row)

    def iter_bytes(self, start: int, stop: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``stop`` (exclusive) of the stored text, for an HTTP Range
        request: only the chunks that overlap are fetched, each checked whole."""
        for row in list(self._rows):
            if row.offset + row.size <= start or row.offset >= stop:
                continue
            cached = self._cache.get(row.seq)
            data = cached.data if cached is not None else self._fetch(row)
            yield data[max(0, start - row.offset):stop - row.offset]

    def _chunk(self, row: _Row) -> _Chunk:
        chunk = self._cache.get(row.seq)
        if chunk is not None:
            self._cache.move_to_end(row.seq)
            return chunk
        chunk = _Chunk(row, self._fetch(row))
        self._cache[row.seq] = chunk
        while len(self._cache) > self.CACHE_CHUNKS:
            self._cache.popitem(last=False)
        return chunk

    def _fetch(self, row: _Row) -> bytes:
        what = f"log chunk {row.object_key} (job {self.job_id}, attempt {self.attempt}, seq {row.seq})"
        try:
            data = self.app.objects.get(row.object_key)
        except ObjectNotFound:
            raise LogCorruptError(f"{what} is missing from the object store") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != row.sha256 or len(data) != row.size:
            raise LogCorruptError(f"{what} fails its checksum: expected sha256 {row.sha256} "
                                  f"({row.size} bytes), found {digest} ({len(data)} bytes)")
        return data
