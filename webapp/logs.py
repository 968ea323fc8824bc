"""Job logs in the browser: a live stream (Server-Sent Events), windows of stored lines for
scrollback, and the raw text as a download.

The stream subscribes to the job's live lines first, then sends the stored lines the
client has not seen (after ``Last-Event-ID``, a line number), then live lines, each line
once and in order. Live messages are best effort and, in the embedded setup, come from
another process's in-memory hub that this process never hears, so whenever no live
message arrived for POLL_SECONDS the stream reads the stored chunk rows again.
"""

from __future__ import annotations

import itertools
import json
import logging
import time

import sqlalchemy as sa
from flask import Blueprint, Response, abort, current_app, jsonify, request, stream_with_context
from flask_login import current_user, login_required

from appliance.accounts import policy
from appliance.models import PipelineJob, PipelineRun, Project, Status
from appliance.pipelines.logrender import render_line
from appliance.pipelines.logs import LogCorruptError, LogReader, log_channel

bp = Blueprint("logs", __name__)
log = logging.getLogger(__name__)

EVENT_LINES = 500  # lines per SSE event at most
POLL_SECONDS = 0.5  # re-read the stored chunks after this long without a live message
GAP_POLL_SECONDS = 0.1  # ... and this often while live lines wait for earlier ones to be stored
MAX_PENDING_LINES = 50_000  # live lines kept waiting for a gap to fill, at most
HEARTBEAT_SECONDS = 15.0
# A stream holds a server thread; after this long it ends and the browser reconnects with
# Last-Event-ID, so a forgotten tab cannot hold a thread for ever.
MAX_STREAM_SECONDS = 30 * 60
RETRY_MS = 2000  # the browser's reconnection delay
MAX_WINDOW = 2000  # lines per /log/lines request at most
DEFAULT_WINDOW = 500


def _appliance():
    return current_app.extensions["prts"]


def _job_attempt(job_id: int) -> int:
    """Check the viewer may see the job (404 when not, as for a project) and return the
    attempt asked for (``?attempt=``, default the job's current one)."""
    with _appliance().db.session() as s:
        job = s.get(PipelineJob, job_id)
        if job is None:
            abort(404)
        run = s.get(PipelineRun, job.run_id)
        project = s.get(Project, job.project_id)
        if run is None or project is None or not policy.can(s, current_user, "pipeline.view", project):
            abort(404)  # 404, not 403: do not confirm that a private project's job exists
        current = job.attempt
    attempt = request.args.get("attempt", current, type=int)
    if not 1 <= attempt <= current:
        abort(404)
    return attempt


def attempt_finished(app, job_id: int, attempt: int) -> bool:
    """Whether the attempt can write no more log: the job is in a final state, or a later
    attempt has begun. A worker stores an attempt's whole log before it finishes the job."""
    with app.db.session() as s:
        row = s.execute(sa.select(PipelineJob.status, PipelineJob.attempt).where(PipelineJob.id == job_id)).first()
    if row is None:
        return True
    status, current = row
    return current > attempt or Status(status).terminal


def status_channel(job_id: int) -> str:
    """Where appliance.pipelines.runs announces that a job's state changed."""
    return f"job-status:{job_id}"


def _html_lines(lines) -> list[list]:
    return [[line.number, str(render_line(line.text, line.runs))] for line in lines]


def _event(name: str, data: dict, event_id: int | None = None) -> str:
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head + "data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n\n"


def _last_event_id() -> int:
    # The browser sends the header when it reconnects; the first connection names the
    # last line the page already shows in the query string.
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or "0"
    try:
        return max(0, int(raw.strip()))
    except ValueError:
        return 0


class LogStream:
    """The events of one SSE connection; iterate it for the response body.

    ``sent`` is the highest line number the client has. Stored lines are read when the
    stream starts and whenever no live message came for POLL_SECONDS (or the job's state
    changed); live lines that follow on from ``sent`` are sent at once. Live lines beyond
    a gap (published before this stream subscribed, or a missed message) wait in
    ``pending`` while the stored lines catch up, which they do within a flush.
    """

    def __init__(self, app, job_id: int, attempt: int, after: int) -> None:
        self.app, self.job_id, self.attempt = app, job_id, attempt
        self.sent = after
        self.reader = LogReader(app, job_id, attempt)
        self.pending: list[tuple[int, list]] = []
        self.pending_lines = 0

    def __iter__(self):
        # Subscribe before reading anything stored, so no line falls between the two.
        subscription = self.app.pubsub.subscribe([log_channel(self.job_id), status_channel(self.job_id)])
        try:
            yield from self._events(subscription)
        except LogCorruptError as exc:
            log.error("%s", exc)
            yield _event("log-error", {"message": "This log is damaged and cannot be shown in full."})
        finally:
            subscription.close()

    def _stored(self):
        """Stored lines the client has not got yet, as events."""
        total = self.reader.line_count()
        while self.sent < total:
            lines = self.reader.lines(self.sent + 1, min(EVENT_LINES, total - self.sent))
            if not lines:
                break
            yield from self._send([(line.number, render_line(line.text, line.runs)) for line in lines])

    def _send(self, numbered: list):
        for i in range(0, len(numbered), EVENT_LINES):
            batch = numbered[i:i + EVENT_LINES]
            self.sent = batch[-1][0]
            yield _event("lines", {"lines": [[n, str(html)] for n, html in batch]}, self.sent)

    def _follow_on(self, first: int, lines: list):
        """Events for the lines of a live message that come after ``sent``."""
        skip = self.sent + 1 - first
        if skip < len(lines):
            yield from self._send([(first + skip + i, render_line(text, runs))
                                   for i, (text, runs) in enumerate(lines[skip:])])

    def _pending(self):
        """Send the waiting live lines that now follow on; forget those already sent."""
        self.pending.sort(key=lambda item: item[0])
        while self.pending and self.pending[0][0] <= self.sent + 1:
            first, lines = self.pending.pop(0)
            self.pending_lines -= len(lines)
            yield from self._follow_on(first, lines)

    def _parse(self, data: str) -> tuple[int, list] | None:
        try:
            message = json.loads(data)
            if message["attempt"] != self.attempt:
                return None
            return int(message["first_line"]), list(message["lines"])
        except (ValueError, KeyError, TypeError):
            return None

    def _events(self, subscription):
        started = last_write = time.monotonic()
        yield f"retry: {RETRY_MS}\n\n"
        next_poll = started
        while True:
            now = time.monotonic()
            if now - started >= MAX_STREAM_SECONDS:
                return  # the browser reconnects with Last-Event-ID
            if now >= next_poll:
                # The job's state first: a worker stores all of an attempt's lines before
                # the job is finished, so lines read after a final state are all there are.
                finished = attempt_finished(self.app, self.job_id, self.attempt)
                for event in itertools.chain(self._stored(), self._pending()):
                    last_write = time.monotonic()
                    yield event
                if finished:
                    yield _event("end", {"last_line": self.sent}, self.sent)
                    return
                next_poll = time.monotonic() + (GAP_POLL_SECONDS if self.pending else POLL_SECONDS)
            if time.monotonic() - last_write >= HEARTBEAT_SECONDS:
                last_write = time.monotonic()
                yield ": ping\n\n"
            wait = min(next_poll, last_write + HEARTBEAT_SECONDS, started + MAX_STREAM_SECONDS) - time.monotonic()
            message = subscription.get(timeout=max(0.0, wait))
            if message is None:
                continue
            if message.channel != log_channel(self.job_id):
                next_poll = time.monotonic()  # the job's state changed: it may have finished
                continue
            parsed = self._parse(message.data)
            if parsed is None:
                continue
            first, lines = parsed
            if first <= self.sent + 1:
                for event in itertools.chain(self._follow_on(first, lines), self._pending()):
                    last_write = time.monotonic()
                    yield event
                # Live lines arrive: no need to read the store until they stop.
                next_poll = time.monotonic() + (GAP_POLL_SECONDS if self.pending else POLL_SECONDS)
            elif self.pending_lines + len(lines) <= MAX_PENDING_LINES:
                self.pending.append((first, lines))
                self.pending_lines += len(lines)
                next_poll = min(next_poll, time.monotonic() + GAP_POLL_SECONDS)
            else:  # too far behind: the store will have these lines too
                next_poll = min(next_poll, time.monotonic() + GAP_POLL_SECONDS)


@bp.get("/-/jobs/<int:job_id>/log/stream")
@login_required
def stream(job_id: int):
    attempt = _job_attempt(job_id)
    body = LogStream(_appliance(), job_id, attempt, _last_event_id())
    return Response(stream_with_context(iter(body)), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@bp.get("/-/jobs/<int:job_id>/log/lines")
@login_required
def lines(job_id: int):
    """A window of stored lines: ``start`` (1-based) and ``count``; without ``start``, the
    last ``count`` lines. JSON ``{"total", "finished", "lines": [[number, html], ...]}``."""
    attempt = _job_attempt(job_id)
    app = _appliance()
    count = min(max(request.args.get("count", DEFAULT_WINDOW, type=int), 0), MAX_WINDOW)
    start = request.args.get("start", type=int)
    finished = attempt_finished(app, job_id, attempt)
    reader = LogReader(app, job_id, attempt)
    total = reader.line_count()
    if start is None:
        start = max(1, total - count + 1)
    start = max(1, start)
    try:
        window = reader.lines(start, count)
    except LogCorruptError as exc:
        log.error("%s", exc)
        return jsonify({"error": {"message": "This part of the log is damaged and cannot be shown."}}), 500
    return jsonify({"total": total, "finished": finished, "lines": _html_lines(window)})


@bp.get("/-/jobs/<int:job_id>/log.txt")
@login_required
def download(job_id: int):
    attempt = _job_attempt(job_id)
    reader = LogReader(_appliance(), job_id, attempt)

    def body():
        try:
            yield from reader.iter_text()
        except LogCorruptError as exc:  # the status line is gone: end the download short
            log.error("%s", exc)
            yield b"\n[the rest of this log is damaged and could not be read]\n"

    return Response(stream_with_context(body()), mimetype="text/plain", headers={
        "Content-Disposition": f'attachment; filename="job-{job_id}-attempt-{attempt}.log"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    })
