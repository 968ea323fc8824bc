"""Secrets and hostile output, from a job's process to every place a log is shown.

A real process writes a secret in the forms jobs print it in (raw, base64, URL-encoded,
JSON-escaped, coloured halfway, overwritten by a progress bar, split across two writes
with a pause between them) and output that would be markup if it were not escaped. The
test then looks everywhere the log goes: live pub/sub messages, stored chunk objects, the
line window JSON, the SSE stream and the raw download. None may carry the secret in any
form, and the only markup in rendered lines is ``<span class="ansi-...">``.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import textwrap
import urllib.parse

import pytest
import sqlalchemy as sa

from appliance.models import LogChunk, PipelineJob
from appliance.pipelines.logs import LogPump, log_channel
from tests.pipelinekit import job_row

SECRET = "p@ss/w0rd+S3cret=42&more"

PRODUCER = textwrap.dedent(r'''
    import base64, json, sys, time, urllib.parse
    secret = sys.argv[1]
    out = sys.stdout.buffer
    def write(text):
        out.write(text.encode())
        out.flush()
        time.sleep(0.02)
    write(f"raw {secret}\n")
    write(f"b64 {base64.b64encode(secret.encode()).decode()}\n")
    write(f"header Authorization: Basic {base64.b64encode(('ci:' + secret).encode()).decode()}\n")
    write(f"url https://example.test/?token={urllib.parse.quote(secret, safe='')}\n")
    write(f"form token={urllib.parse.quote_plus(secret)}\n")
    write(json.dumps({"token": secret}) + "\n")
    write(f"colour \x1b[31m{secret[:6]}\x1b[0m{secret[6:]}\n")
    write(f"progress 10%\r{secret} 100%\n")
    write(f"split {secret[:9]}")
    time.sleep(0.4)  # long enough for the pump to have read the first half
    write(f"{secret[9:]} joined\n")
    write("<script>alert(document.cookie)</script> <img src=x onerror=alert(1)>\n")
    write("\x1b[1;32m<a hx-get=\"/admin\" hx-trigger=\"load\">click</a>\x1b[0m & \"quotes\" 'single'\n")
    write("\x1b]8;;javascript:alert(1)\x1b\\hyperlink\x1b]8;;\x1b\\ done\n")
''')

FORMS = {
    "raw": SECRET,
    "base64": base64.b64encode(SECRET.encode()).decode().rstrip("="),
    "percent": urllib.parse.quote(SECRET, safe=""),
    "form": urllib.parse.quote_plus(SECRET),
    "json": json.dumps(SECRET)[1:-1],
    "first half": SECRET[:9],
    "second half": SECRET[9:],
}
ALLOWED_TAG = re.compile(r'^(<span class="ansi-[a-z0-9 -]+">|</span>)$')


def assert_clean(where: str, text: str) -> None:
    for name, form in FORMS.items():
        assert form not in text, f"the secret's {name} form leaked into {where}"


def assert_safe_html(where: str, html: str) -> None:
    for tag in re.findall(r"<[^>]*>", html):
        assert ALLOWED_TAG.match(tag), f"{where} holds markup other than class spans: {tag!r}"
    assert "<script" not in html and "<img" not in html and "<a " not in html


def _job(appliance) -> int:
    return job_row(appliance, name="leak")[1]


@pytest.fixture
def logged_job(appliance, tmp_path):
    """Run the producer into a spool with a pump; returns (job id, live messages)."""
    job_id = _job(appliance)
    spool = tmp_path / "spool.log"
    spool.touch()
    messages = []
    with appliance.pubsub.subscribe([log_channel(job_id)]) as live:
        pump = LogPump(appliance, job_id, 1, spool, [SECRET])
        pump.start()
        with open(spool, "ab") as out:
            subprocess.run([sys.executable, "-c", PRODUCER, SECRET], stdout=out, check=True, timeout=30)
        pump.stop()
        while (message := live.get(timeout=0.2)) is not None:
            messages.append(message.data)
    with appliance.db.session() as s:
        s.execute(sa.update(PipelineJob).where(PipelineJob.id == job_id).values(status="success"))
    return job_id, messages


def test_no_form_of_a_secret_reaches_any_view_of_the_log(client, auth, admin, appliance, logged_job):
    job_id, messages = logged_job
    assert messages, "no live lines were published"
    for data in messages:
        assert_clean("a live pub/sub message", data)

    with appliance.db.session() as s:
        keys = s.scalars(sa.select(LogChunk.object_key).where(LogChunk.job_id == job_id)).all()
    stored = b"".join(appliance.objects.get(key) for key in keys).decode()
    assert_clean("a stored chunk", stored)
    assert stored.count("[MASKED]") >= 9
    assert "split [MASKED] joined" in stored and "colour [MASKED]\n" in stored

    auth.login()
    window = client.get(f"/-/jobs/{job_id}/log/lines?start=1&count=100").get_json()
    html = "\n".join(line for _, line in window["lines"])
    assert_clean("the line window", html)
    stream = client.get(f"/-/jobs/{job_id}/log/stream").get_data(as_text=True)
    assert_clean("the SSE stream", stream)
    download = client.get(f"/-/jobs/{job_id}/log.txt").get_data(as_text=True)
    assert_clean("the download", download)
    assert download == stored


def test_hostile_output_is_escaped_text_in_class_spans(client, auth, admin, logged_job):
    job_id, _ = logged_job
    auth.login()
    lines = dict(client.get(f"/-/jobs/{job_id}/log/lines?start=1&count=100").get_json()["lines"])
    for number, html in lines.items():
        assert_safe_html(f"line {number}", html)
    rendered = "\n".join(lines.values())
    assert "&lt;script&gt;alert(document.cookie)&lt;/script&gt; &lt;img src=x onerror=alert(1)&gt;" in rendered
    assert ('<span class="ansi-fg-2 ansi-bold">&lt;a hx-get=&#34;/admin&#34; hx-trigger=&#34;load&#34;&gt;'
            'click&lt;/a&gt;</span> &amp; &#34;quotes&#34; &#39;single&#39;') in rendered
    assert "hyperlink done" in rendered and "javascript:" not in rendered  # OSC 8 dropped whole
    stream = client.get(f"/-/jobs/{job_id}/log/stream").get_data(as_text=True)
    for block in stream.split("\n\n"):
        if block.startswith("event: lines"):
            data = json.loads(block.split("data: ", 1)[1])
            for number, html in data["lines"]:
                assert_safe_html(f"streamed line {number}", html)
    download = client.get(f"/-/jobs/{job_id}/log.txt")
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.mimetype == "text/plain"
