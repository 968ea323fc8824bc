"""A live log followed over a real HTTP server by a client whose connection keeps dropping.

A job-like producer (``seq``, in ten bursts) writes 200 000 lines into a spool file that a
LogPump tails. An SSE client follows ``/-/jobs/<id>/log/stream`` over a real
threaded HTTP server and drops its connection ten times, sometimes between events and
sometimes halfway through one; the server also ends each stream after a short lifetime.
Every time the client reconnects with ``Last-Event-ID``, as a browser does. The lines it
received must be ``seq 1 200000`` exactly (each once, in order), and so must the stored log.

Three ways for lines to reach the stream: the pump shares the web process's in-process
pub/sub (live path), the pump is "another process" whose in-process messages never reach
the web process (the embedded setup: the stream must poll the stored chunks), and Redis.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from appliance import migrate
from appliance.accounts import users
from appliance.context import Appliance
from appliance.models import PipelineJob
from appliance.pipelines.logs import LogPump, LogReader
from servers import free_port
from tests.pipelinekit import job_row
from tests.conftest import ADMIN_PASSWORD, make_config

LINES = 200_000
BURSTS = 10
DROPS = 10
USER_AGENT = "prts-fault-test"
EXPECTED_SHA = hashlib.sha256("".join(f"{n}\n" for n in range(1, LINES + 1)).encode()).hexdigest()


def _job(app) -> int:
    return job_row(app, name="seq")[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class HttpServer:
    """The Flask app on a real threaded HTTP server on a free loopback port."""

    def __init__(self, flask_app):
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, flask_app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(10)


def sign_in(port: int) -> str:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", USER_AGENT)]  # sessions are bound to it ("strong" protection)
    base = f"http://127.0.0.1:{port}"
    page = opener.open(base + "/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": "root", "password": ADMIN_PASSWORD, "csrf_token": token})
    opener.open(base + "/login", form.encode(), timeout=10)
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


class DroppingClient(threading.Thread):
    """Follows the stream like EventSource does, but drops the connection DROPS times."""

    def __init__(self, port: int, cookie: str, job_id: int, seed: int):
        super().__init__(daemon=True)
        self.port, self.cookie, self.job_id = port, cookie, job_id
        rng = random.Random(seed)
        per_burst = LINES // BURSTS
        self.thresholds = [k * per_burst + rng.randint(1, per_burst - 1) for k in range(DROPS)]
        self.mid_event = [k % 2 == 1 for k in range(DROPS)]
        self.last_id: int | None = None
        self.lines: list[str] = []
        self.connections = self.drops = self.server_closes = 0
        self.ended = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 180
            while not self.ended:
                assert time.monotonic() < deadline, "the stream did not end"
                self._connection()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _connection(self) -> None:
        self.connections += 1
        headers = {"Cookie": self.cookie, "Accept": "text/event-stream", "User-Agent": USER_AGENT}
        path = f"/-/jobs/{self.job_id}/log/stream?attempt=1&last_event_id=0"
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            assert response.status == 200, response.status
            fields: dict[str, str] = {}
            while True:
                raw = response.readline()
                if not raw:  # the server ended the stream (its lifetime): reconnect
                    self.server_closes += 1
                    return
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    continue
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
                    if name == "id" and self._drop_due(int(value), mid_event=True):
                        return  # halfway through an event: it must not count
                    continue
                if "event" in fields:
                    self._dispatch(fields)
                    if self.ended or self._drop_due(len(self.lines), mid_event=False):
                        return
                fields = {}
        finally:
            conn.close()

    def _drop_due(self, line: int, *, mid_event: bool) -> bool:
        """Drop number k comes once line ``thresholds[k]`` is reached, half of them halfway
        through an event, the others between two events."""
        if self.drops >= DROPS or line < self.thresholds[self.drops] or mid_event != self.mid_event[self.drops]:
            return False
        self.drops += 1
        return True

    def _dispatch(self, fields: dict[str, str]) -> None:
        if fields["event"] == "end":
            self.ended = True
            return
        assert fields["event"] == "lines", fields
        numbers_and_html = json.loads(fields["data"])["lines"]
        expected = len(self.lines) + 1
        numbers = [n for n, _ in numbers_and_html]
        assert numbers == list(range(expected, expected + len(numbers))), (expected, numbers[:3])
        self.lines.extend(html for _, html in numbers_and_html)
        self.last_id = int(fields["id"])
        assert self.last_id == numbers[-1]


@pytest.fixture(params=["memory-shared", "memory-other-process", "redis"])
def setup(request, tmp_path, monkeypatch):
    import webapp.logs
    from webapp import create_app

    values = {}
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        values = {"pubsub__backend": "redis", "pubsub__url": server.url}
    config = make_config(tmp_path / "data", **values)
    web = Appliance(config)
    migrate.upgrade(web.db)
    with web.db.session() as s:
        users.create_user(s, "root", ADMIN_PASSWORD, is_admin=True)
    # The worker side: the same appliance (one process) or another one (another process).
    worker = web if request.param == "memory-shared" else Appliance(config)
    flask_app = create_app(config)
    flask_app.extensions["prts"] = web
    monkeypatch.setattr(webapp.logs, "MAX_STREAM_SECONDS", 1.0)  # streams also end server-side
    yield web, worker, flask_app, request.param
    if worker is not web:
        worker.close()
    web.close()


def test_dropped_and_resumed_sse_client_gets_every_line_once(setup, tmp_path):
    web, worker, flask_app, mode = setup
    job_id = _job(web)
    spool = tmp_path / "spool" / f"{job_id}-1.log"
    spool.parent.mkdir()
    spool.touch()
    with HttpServer(flask_app) as server:
        client = DroppingClient(server.port, sign_in(server.port), job_id, seed=len(mode))
        pump = LogPump(worker, job_id, 1, spool, [])
        pump.start()
        client.start()
        per_burst = LINES // BURSTS
        with open(spool, "ab") as out:
            for burst in range(BURSTS):
                # `seq` writes a burst; the job goes on once the client dropped in its middle.
                subprocess.run(["seq", str(burst * per_burst + 1), str((burst + 1) * per_burst)], stdout=out,
                               check=True, timeout=60)
                wait_for(lambda: client.drops > burst or client.error, 60, f"drop {burst + 1}")
                time.sleep(0.1)
        time.sleep(1.5)  # longer than a stream may live: the server ends it, the client resumes
        totals = pump.stop()
        with worker.db.session() as s:
            s.execute(sa.update(PipelineJob).where(PipelineJob.id == job_id).values(status="success"))
        worker.pubsub.publish(f"job-status:{job_id}", "changed")
        client.join(200)
    assert not client.is_alive(), "the client did not finish"
    if client.error is not None:
        raise client.error
    assert client.ended and client.drops == DROPS and client.server_closes >= 1
    assert client.connections >= DROPS + client.server_closes + 1
    received = "".join(f"{html}\n" for html in client.lines)
    assert len(client.lines) == LINES and hashlib.sha256(received.encode()).hexdigest() == EXPECTED_SHA
    stored = b"".join(LogReader(web, job_id, 1).iter_text())
    assert hashlib.sha256(stored).hexdigest() == EXPECTED_SHA
    assert (totals.lines, totals.truncated) == (LINES, False)
