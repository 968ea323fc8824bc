"""Job logs: the spool pump, stored chunks, salvage, the reader and the log endpoints.

Pump and reader tests run on both object stores (a directory and a real S3 server) and
both pub/sub backends (in-process and a real Redis).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance import migrate
from appliance.accounts import organisations, users
from appliance.context import Appliance
from appliance.models import LogChunk, PipelineJob, Role
from appliance.native import LogEngine, process_log
from appliance.pipelines import logs
from appliance.pipelines.logrender import render_line
from appliance.pipelines.logs import (LogCorruptError, LogError, LogPump, LogReader, LogTotals, log_channel,
                                      salvage, truncation_marker)
from appliance.storage.objects import ObjectStoreError
from tests.pipelinekit import job_row
from tests.conftest import AuthActions, make_config

OTHER_PASSWORD = "another long passphrase 42"


def make_job(app, *, status: str = "running", org: str = "acme", project: str = "web") -> int:
    return job_row(app, status=status, org=org, project=project)[1]


def set_status(app, job_id: int, status: str) -> None:
    with app.db.session() as s:
        s.execute(sa.update(PipelineJob).where(PipelineJob.id == job_id).values(status=status))


def wait_for(predicate, timeout: float = 10, what: str = "a condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def stored_text(app, job_id: int, attempt: int = 1) -> bytes:
    return b"".join(LogReader(app, job_id, attempt).iter_text())


def chunk_rows(app, job_id: int, attempt: int = 1) -> list[LogChunk]:
    with app.db.session() as s:
        return list(s.scalars(sa.select(LogChunk).where(LogChunk.job_id == job_id, LogChunk.attempt == attempt)
                              .order_by(LogChunk.seq)))


def collect_live(subscription, until_line: int, timeout: float = 10) -> dict[int, tuple[str, list]]:
    """Live lines by number until line ``until_line`` arrived."""
    got: dict[int, tuple[str, list]] = {}
    deadline = time.monotonic() + timeout
    while until_line not in got:
        message = subscription.get(timeout=max(0.0, deadline - time.monotonic()))
        if message is None:
            raise AssertionError(f"live lines stopped at {max(got, default=0)} of {until_line}")
        data = json.loads(message.data)
        for i, (text, runs) in enumerate(data["lines"]):
            got[data["first_line"] + i] = (text, runs)
    return got


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


@pytest.fixture
def log_app(tmp_path, objects_values, pubsub_values):
    app = Appliance(make_config(tmp_path / "data", **objects_values, **pubsub_values))
    migrate.upgrade(app.db)
    yield app
    app.close()


@pytest.fixture
def spool(tmp_path) -> Path:
    path = tmp_path / "spool" / "job.log"
    path.parent.mkdir()
    path.touch()
    return path


# -- the pump ------------------------------------------------------------------------------


def test_pump_stores_checksummed_chunks_and_publishes_numbered_lines(log_app, spool):
    job_id = make_job(log_app)
    raw = b"".join(b"\x1b[32mok\x1b[0m step %d: \xe2\x9c\x93 done\r\n" % i for i in range(3000))
    with log_app.pubsub.subscribe([log_channel(job_id)]) as live:
        pump = LogPump(log_app, job_id, 1, spool, [])
        pump.chunk_bytes = 16 * 1024  # several chunks
        pump.start()
        for i in range(0, len(raw), 7001):  # writes that cut lines (and a UTF-8 character) anywhere
            append(spool, raw[i:i + 7001])
            time.sleep(0.005)
        received = collect_live(live, 3000)
        totals = pump.stop()

    expected = process_log(raw)
    assert totals == LogTotals(len(expected.text), 3000, False)
    assert stored_text(log_app, job_id) == expected.text
    rows = chunk_rows(log_app, job_id)
    assert len(rows) > 3
    line, offset = 1, 0
    for seq, row in enumerate(rows):
        data = log_app.objects.get(row.object_key)
        assert row.object_key == f"logs/{job_id}/1/{seq:08d}"
        assert (row.seq, row.first_line, row.offset, row.size) == (seq, line, offset, len(data))
        assert row.sha256 == hashlib.sha256(data).hexdigest() and data.count(b"\n") == row.line_count
        # raw_end is an exact resume point: the spool up to it makes exactly the stored text.
        assert process_log(spool.read_bytes()[:row.raw_end]).text == expected.text[:offset + row.size]
        runs = logs.unpack_runs(row.styles)
        assert len(runs) == 5 * row.line_count and runs[0] == 0  # each line starts with a green "ok"
        line, offset = line + row.line_count, offset + row.size
    with log_app.db.session() as s:
        job = s.get(PipelineJob, job_id)
        assert (job.log_bytes, job.log_lines, job.log_truncated, job.status) == (len(expected.text), 3000, False,
                                                                                   "running")
    # The live lines are the stored lines, numbered alike.
    stored = LogReader(log_app, job_id, 1).lines(1, 3000)
    assert [(n, text) for n, (text, _) in sorted(received.items())] == [(ln.number, ln.text) for ln in stored]
    assert received[7] == ("ok step 6: ✓ done", [[0, 2, 0x1000002, 0, 0]])
    assert stored[6].runs == ((0, 2, 0x1000002, 0, 0),)


def test_a_line_is_stored_half_a_second_after_it_was_written(log_app, spool):
    job_id = make_job(log_app)
    pump = LogPump(log_app, job_id, 1, spool, [])
    pump.start()
    try:
        append(spool, b"first\nsecond without newline")
        started = time.monotonic()
        wait_for(lambda: LogReader(log_app, job_id, 1).line_count() == 1, 5, "the first line to be stored")
        assert time.monotonic() - started < 2.0
        assert [ln.text for ln in LogReader(log_app, job_id, 1).lines(1, 10)] == ["first"]
    finally:
        totals = pump.stop()
    assert totals.lines == 2  # stop() drains the unfinished last line too
    assert stored_text(log_app, job_id) == b"first\nsecond without newline\n"


def test_secrets_and_their_encodings_are_masked_even_split_across_writes(log_app, spool):
    job_id = make_job(log_app)
    secret = "s3cr3t-Token-9f8e7d"
    encoded = base64.b64encode(b"user:" + secret.encode()).decode()
    with log_app.pubsub.subscribe([log_channel(job_id)]) as live:
        pump = LogPump(log_app, job_id, 1, spool, [secret])
        pump.start()
        append(spool, f"token={secret}\nAuthorization: Basic {encoded}\nsplit: {secret[:7]}".encode())
        time.sleep(0.3)  # the pump has read the first half of the split secret by now
        append(spool, f"{secret[7:]} end\n".encode())
        received = collect_live(live, 3)
        pump.stop()
    text = stored_text(log_app, job_id).decode()
    live_text = "\n".join(text for text, _ in received.values())
    for shown in (text, live_text):
        assert secret not in shown and encoded[8:-4] not in shown and secret[:7] not in shown
        assert shown.count("[MASKED]") == 3
    assert "split: [MASKED] end" in text


def test_the_cap_keeps_whole_lines_and_ends_with_a_marker(tmp_path, spool):
    app = Appliance(make_config(tmp_path / "data", pipelines__max_log_bytes=2048))
    migrate.upgrade(app.db)
    job_id = make_job(app)
    with app.pubsub.subscribe([log_channel(job_id)]) as live:
        pump = LogPump(app, job_id, 1, spool, [])
        pump.start()
        append(spool, b"".join(b"line %04d\n" % i for i in range(1000)))  # 10 000 bytes
        time.sleep(0.2)
        append(spool, b"more output after the cap\n" * 100)
        received = collect_live(live, 205)
        totals = pump.stop()
    marker = truncation_marker(2048)
    assert marker == "[log truncated: this job's log reached the 2 KiB limit; later output was not stored]"
    lines = [ln.text for ln in LogReader(app, job_id, 1).lines(1, 1000)]
    assert lines == [f"line {i:04d}" for i in range(204)] + [marker]
    assert received[205][0] == marker and live.get(timeout=0.3) is None
    assert totals == LogTotals(204 * 10 + len(marker) + 1, 205, True)
    with app.db.session() as s:
        assert s.get(PipelineJob, job_id).log_truncated
    assert pump._fed_pos == spool.stat().st_size  # the spool was drained, so the job could go on
    # A resumed pump (salvage) knows the log is cut and stores nothing more.
    append(spool, b"even later\n")
    assert salvage(app, job_id, 1, spool, []) == totals
    app.close()


def test_a_corrupt_or_missing_chunk_is_named(log_app, spool):
    job_id = make_job(log_app)
    append(spool, b"".join(b"line %d\n" % i for i in range(5000)))
    pump = LogPump(log_app, job_id, 1, spool, [])
    pump.chunk_bytes = 8 * 1024
    pump.stop()
    rows = chunk_rows(log_app, job_id)
    victim = rows[1]
    data = bytearray(log_app.objects.get(victim.object_key))
    data[10] ^= 0x01
    log_app.objects.put(victim.object_key, bytes(data))
    reader = LogReader(log_app, job_id, 1)
    assert reader.lines(1, 3)[2].text == "line 2"  # the first chunk is fine
    with pytest.raises(LogCorruptError, match=f"{victim.object_key}.*checksum"):
        reader.lines(victim.first_line, 1)
    with pytest.raises(LogCorruptError):
        list(LogReader(log_app, job_id, 1).iter_text())
    log_app.objects.delete(rows[2].object_key)
    with pytest.raises(LogCorruptError, match=f"{rows[2].object_key}.*missing"):
        reader.lines(rows[2].first_line, 1)


def test_reader_windows_tail_and_cache(log_app, spool):
    job_id = make_job(log_app)
    append(spool, "".join(f"line {i} ✓\n" for i in range(1, 20001)).encode())
    pump = LogPump(log_app, job_id, 1, spool, [])
    pump.chunk_bytes = 16 * 1024
    pump.stop()
    reader = LogReader(log_app, job_id, 1)
    assert reader.line_count() == 20000
    assert len(chunk_rows(log_app, job_id)) > 10
    window = reader.lines(9990, 300)  # across chunk boundaries
    assert [(ln.number, ln.text) for ln in window] == [(n, f"line {n} ✓") for n in range(9990, 10290)]
    assert [ln.text for ln in reader.tail(3)] == ["line 19998 ✓", "line 19999 ✓", "line 20000 ✓"]
    assert reader.lines(19999, 50)[-1].number == 20000 and reader.lines(20001, 5) == []
    assert len(reader._cache) <= LogReader.CACHE_CHUNKS
    with pytest.raises(ValueError):
        reader.lines(0, 5)


class FlakyStore:
    """An object store whose puts fail while ``failures`` lasts (a network blip, S3 down)."""

    def __init__(self, store, failures: int):
        self.store, self.failures, self.refused = store, failures, 0

    def put(self, key: str, data: bytes) -> None:
        if self.failures:
            self.failures -= 1
            self.refused += 1
            raise ObjectStoreError("the object store is unreachable")
        self.store.put(key, data)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_storage_failures_are_retried_and_lose_no_line(tmp_path, spool):
    app = Appliance(make_config(tmp_path / "data"))
    migrate.upgrade(app.db)
    job_id = make_job(app)
    app.__dict__["objects"] = flaky = FlakyStore(app.objects, failures=3)
    raw = b"".join(b"line %d\n" % i for i in range(20000))
    pump = LogPump(app, job_id, 1, spool, [])
    pump.chunk_bytes = 16 * 1024
    pump.start()
    for i in range(0, len(raw), 10000):
        append(spool, raw[i:i + 10000])
    time.sleep(0.2)
    assert pump.stop() == LogTotals(len(raw), 20000, False)
    assert flaky.refused == 3 and stored_text(app, job_id) == raw

    # Storage down for good: stop() gives up with LogError, and salvage stores it all later.
    job_id = make_job(app, project="down")
    spool.write_bytes(raw)
    flaky.failures = 10**6
    pump = LogPump(app, job_id, 1, spool, [])
    with pytest.raises(LogError, match=f"job {job_id}"):
        pump.stop()
    flaky.failures = 0
    assert salvage(app, job_id, 1, spool, []) == LogTotals(len(raw), 20000, False)
    assert stored_text(app, job_id) == raw
    app.close()


# -- salvage after a worker died -----------------------------------------------------------


def test_salvage_stores_every_byte_a_dead_workers_pump_had_not(log_app, spool):
    job_id = make_job(log_app)
    before = b"".join(b"\x1b[1mbefore\x1b[0m %d\n" % i for i in range(2000))
    after = b"".join(b"after %d\n" % i for i in range(3000)) + b"last line without newline"
    with log_app.pubsub.subscribe([log_channel(job_id)]) as live:
        pump = LogPump(log_app, job_id, 1, spool, ["hunter2-secret"])
        pump.chunk_bytes = 8 * 1024
        pump.start()
        append(spool, before)
        wait_for(lambda: LogReader(log_app, job_id, 1).line_count() == 2000, 10, "the first lines to be stored")
        pump.chunk_bytes = pump.flush_seconds = math.inf  # from now on it never stores: then it dies
        append(spool, after.replace(b"after 5\n", b"after 5 hunter2-secret\n"))
        collect_live(live, 5000)  # read, processed and published, but not stored
        pump.abandon()
    stored_before = LogReader(log_app, job_id, 1).line_count()
    assert stored_before == 2000

    totals = salvage(log_app, job_id, 1, spool, ["hunter2-secret"])
    expected = process_log(spool.read_bytes(), ["hunter2-secret"]).text
    assert stored_text(log_app, job_id) == expected
    assert totals == LogTotals(len(expected), 5001, False)
    reader = LogReader(log_app, job_id, 1)
    assert [ln.number for ln in reader.lines(1, 6000)] == list(range(1, 5002))
    assert reader.lines(2006, 1)[0].text == "after 5 [MASKED]"
    assert spool.exists()  # the caller removes it
    # A second salvage finds nothing more to store.
    assert salvage(log_app, job_id, 1, spool, ["hunter2-secret"]) == totals


def test_a_line_longer_than_the_engine_holds_is_live_at_once_and_stored_whole(tmp_path, spool):
    app = Appliance(make_config(tmp_path / "data"))
    migrate.upgrade(app.db)
    job_id = make_job(app)
    long_line = b"x" * (LogEngine.DEFAULT_MAX_LINE * 2 + 12345)  # no newline for over 2 MiB
    with app.pubsub.subscribe([log_channel(job_id)]) as live:
        pump = LogPump(app, job_id, 1, spool, [])
        pump.start()
        append(spool, b"head\n" + long_line[: len(long_line) // 2])
        received = collect_live(live, 2)  # a force-broken piece is published at once ...
        time.sleep(3 * pump.flush_seconds)
        pump.abandon()
    assert received[2][0] == "x" * len(received[2][0]) and len(received[2][0]) > 1000
    # ... but stored only once its line has ended, so each chunk ends at a raw line's end.
    assert [(row.line_count, row.raw_end) for row in chunk_rows(app, job_id)] == [(1, 5)]
    append(spool, long_line[len(long_line) // 2:] + b"\ntail\n")
    salvage(app, job_id, 1, spool, [])
    assert stored_text(app, job_id) == process_log(spool.read_bytes()).text
    app.close()


# -- rendering -----------------------------------------------------------------------------


def test_render_line_escapes_text_and_only_writes_class_spans():
    engine_out = process_log(b"\x1b[1;31m<script>alert(1)</script>\x1b[0m & \x1b[7m\"hx-get='x'\"\x1b[0m "
                             b"\x1b[38;5;208mor\x1b[48;2;0;0;200mange\x1b[0m\n")
    (text, runs), = logs.split_lines(engine_out.text, engine_out.line_starts, engine_out.runs)
    html = str(render_line(text, runs))
    assert html == ('<span class="ansi-fg-1 ansi-bold">&lt;script&gt;alert(1)&lt;/script&gt;</span> &amp; '
                    '<span class="ansi-fg-bg ansi-bg-fg">&#34;hx-get=&#39;x&#39;&#34;</span> '
                    '<span class="ansi-fg-3">or</span><span class="ansi-fg-3 ansi-bg-4">ange</span>')
    assert render_line("plain ünïcode", []) == "plain ünïcode"
    # Runs out of range or overlapping are clipped, never a way to emit raw text.
    assert str(render_line("<ab>", [[1, 100, 0x1000001, 0, 0], [0, 2, 0, 0, 1]])) == \
        '&lt;<span class="ansi-fg-1">ab&gt;</span>'


# -- the web endpoints ---------------------------------------------------------------------


def _stored_job(appliance, tmp_path, raw: bytes, *, status: str = "success", chunk_bytes: int = 4096) -> int:
    job_id = make_job(appliance, status=status)
    spool = tmp_path / f"{job_id}.log"
    spool.write_bytes(raw)
    pump = LogPump(appliance, job_id, 1, spool, [])
    pump.chunk_bytes = chunk_bytes
    pump.stop()
    return job_id


def sse_events(body: str) -> list[tuple[str, str | None, dict]]:
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":"))
        if "event" in fields:
            events.append((fields["event"], fields.get("id"), json.loads(fields["data"])))
    return events


def test_lines_window_json_and_download(client, auth, admin, appliance, tmp_path):
    raw = b"".join(b"\x1b[31mred\x1b[0m <b>%d</b>\n" % i for i in range(1, 3001))
    job_id = _stored_job(appliance, tmp_path, raw)
    auth.login()
    tail = client.get(f"/-/jobs/{job_id}/log/lines?attempt=1").get_json()
    assert tail["total"] == 3000 and tail["finished"] is True
    assert [n for n, _ in tail["lines"]] == list(range(2501, 3001))
    assert tail["lines"][-1][1] == '<span class="ansi-fg-1">red</span> &lt;b&gt;3000&lt;/b&gt;'
    window = client.get(f"/-/jobs/{job_id}/log/lines?start=10&count=5").get_json()
    assert [n for n, _ in window["lines"]] == [10, 11, 12, 13, 14]
    assert len(client.get(f"/-/jobs/{job_id}/log/lines?start=1&count=100000").get_json()["lines"]) == 2000

    download = client.get(f"/-/jobs/{job_id}/log.txt")
    assert download.status_code == 200 and download.is_streamed
    assert download.headers["Content-Type"].startswith("text/plain")
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Disposition"] == f'attachment; filename="job-{job_id}-attempt-1.log"'
    assert download.get_data() == process_log(raw).text


def test_a_100_mb_log_opens_tail_first_and_scrolls_by_windows(client, auth, admin, appliance, tmp_path):
    """The job page's first request (the tail) and a scroll-back window read only the
    chunks they show, never the whole 100 MB log."""
    line = b"%08d " + b"x" * 90 + b"\n"  # 100 bytes a line
    count = 1_000_000
    raw = b"".join(line % i for i in range(1, count + 1))
    assert len(raw) == 100_000_000
    job_id = _stored_job(appliance, tmp_path, raw, chunk_bytes=256 * 1024)
    chunks = list(appliance.objects.list(f"logs/{job_id}/1/"))
    assert len(chunks) > 300
    fetched = []
    real_get = appliance.objects.get
    appliance.objects.get = lambda key: fetched.append(key) or real_get(key)
    try:
        auth.login()
        tail = client.get(f"/-/jobs/{job_id}/log/lines?attempt=1").get_json()
        assert tail["total"] == count
        assert [n for n, _ in tail["lines"]] == list(range(count - 499, count + 1))
        assert tail["lines"][-1][1].startswith(f"{count:08d} ")
        assert len(fetched) <= 2, fetched
        fetched.clear()
        window = client.get(f"/-/jobs/{job_id}/log/lines?attempt=1&start=500001&count=500").get_json()
        assert window["lines"][0][1].startswith("00500001 ") and len(window["lines"]) == 500
        assert len(fetched) <= 2, fetched
    finally:
        appliance.objects.get = real_get


def test_stream_of_a_finished_job_sends_stored_lines_after_last_event_id_then_ends(client, auth, admin, appliance,
                                                                                      tmp_path):
    job_id = _stored_job(appliance, tmp_path, b"".join(b"line %d\n" % i for i in range(1, 1201)))
    auth.login()
    response = client.get(f"/-/jobs/{job_id}/log/stream?last_event_id=100")
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = sse_events(response.get_data(as_text=True))
    assert [name for name, _, _ in events] == ["lines", "lines", "lines", "end"]
    numbers = [n for _, _, data in events[:-1] for n, _ in data["lines"]]
    assert numbers == list(range(101, 1201))
    assert [event_id for _, event_id, _ in events] == ["600", "1100", "1200", "1200"]
    assert events[0][2]["lines"][0] == [101, "line 101"]
    # The header the browser sends when it reconnects wins over the query string.
    resumed = client.get(f"/-/jobs/{job_id}/log/stream?last_event_id=100", headers={"Last-Event-ID": "1150"})
    events = sse_events(resumed.get_data(as_text=True))
    assert [n for n, _ in events[0][2]["lines"]] == list(range(1151, 1201)) and events[-1][0] == "end"


def test_a_quiet_stream_sends_heartbeats_and_ends_after_its_lifetime(client, auth, admin, appliance, monkeypatch):
    import webapp.logs

    job_id = make_job(appliance)  # running, and silent
    monkeypatch.setattr(webapp.logs, "HEARTBEAT_SECONDS", 0.2)
    monkeypatch.setattr(webapp.logs, "MAX_STREAM_SECONDS", 0.9)
    auth.login()
    started = time.monotonic()
    body = client.get(f"/-/jobs/{job_id}/log/stream").get_data(as_text=True)
    assert 0.8 < time.monotonic() - started < 5
    assert body.startswith("retry: 2000\n\n") and body.count(": ping\n\n") >= 3
    assert "event:" not in body  # no lines and no end: the browser reconnects and goes on


def test_corrupt_chunk_answers_an_error_not_wrong_lines(client, auth, admin, appliance, tmp_path):
    job_id = _stored_job(appliance, tmp_path, b"".join(b"line %d\n" % i for i in range(1, 2001)))
    row = chunk_rows(appliance, job_id)[-1]
    appliance.objects.put(row.object_key, b"tampered\n")
    auth.login()
    response = client.get(f"/-/jobs/{job_id}/log/lines")
    assert response.status_code == 500 and "damaged" in response.get_json()["error"]["message"]
    events = sse_events(client.get(f"/-/jobs/{job_id}/log/stream").get_data(as_text=True))
    assert events[-1][0] == "log-error"


def test_log_endpoints_need_login_and_the_pipeline_view_permission(client, appliance, tmp_path):
    job_id = _stored_job(appliance, tmp_path, b"classified output\n")
    paths = [f"/-/jobs/{job_id}/log/lines", f"/-/jobs/{job_id}/log/stream", f"/-/jobs/{job_id}/log.txt"]
    for path in paths:
        assert client.get(path).status_code == 302  # to the sign-in page
    with appliance.db.session() as s:
        users.create_user(s, "outsider", OTHER_PASSWORD)
        viewer = users.create_user(s, "viewer", OTHER_PASSWORD)
        organisations.grant(s, viewer, organisations.get_organisation(s, "acme"), Role.VIEWER)
    auth = AuthActions(client)
    auth.login("outsider", OTHER_PASSWORD)
    for path in paths + [f"/-/jobs/{job_id + 999}/log/lines"]:
        assert client.get(path).status_code == 404
    auth.logout()
    auth.login("viewer", OTHER_PASSWORD)
    assert client.get(paths[0]).get_json()["lines"] == [[1, "classified output"]]
    assert client.get(f"/-/jobs/{job_id}/log/lines?attempt=2").status_code == 404
    assert client.get(f"/-/jobs/{job_id}/log/lines?attempt=0").status_code == 404


def test_viewer_partial_renders_for_a_job(flask_app, appliance):
    job_id = make_job(appliance)
    with appliance.db.session() as s:
        job = s.get(PipelineJob, job_id)
    with flask_app.test_request_context("/"):
        from flask import render_template_string

        html = render_template_string('{% include "partials/log_viewer.html" %}', job=job)
    assert f'data-lines-url="/-/jobs/{job_id}/log/lines?attempt=1"' in html
    assert f'data-stream-url="/-/jobs/{job_id}/log/stream?attempt=1"' in html
    assert "js/prts-log.js" in html and 'role="log"' in html
