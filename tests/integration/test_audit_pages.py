"""The audit pages: ``/audit`` for site administrators, ``/<org>/<name>/-/audit`` for a
project's Maintainers; filters, keyset pages, the CSV export; and the events that page
actions write. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re

import pytest
import sqlalchemy as sa

from appliance import audit
from appliance.accounts import organisations, users
from appliance.models import AuditEvent, Project, Role
from conftest import ADMIN_PASSWORD, csrf_token, make_config, sign_in

PASSWORD = "a long enough password"


@pytest.fixture
def config(tmp_path, db_values):
    return make_config(tmp_path / "data", **db_values)


@pytest.fixture
def site(appliance, admin):
    """acme/web and acme/other; a Maintainer and a Developer of web, a Maintainer of other."""
    with appliance.db.session() as s:
        org = organisations.create_organisation(s, "acme")
        web = organisations.create_project(s, org, "web")
        other = organisations.create_project(s, org, "other")
        for username, project, role in (("maint", web, Role.MAINTAINER), ("dev", web, Role.DEVELOPER),
                                         ("othermaint", other, Role.MAINTAINER)):
            organisations.grant(s, users.create_user(s, username, PASSWORD), project, role)
        return {"web": web.id, "other": other.id}


def record(appliance, action: str, *, project_id: int | None = None, **fields) -> None:
    with appliance.db.session() as s:
        project = s.get(Project, project_id) if project_id else None
        audit.record(s, action, actor=fields.pop("actor", "alice"), project=project, **fields)


def seqs(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-seq="(\d+)">', html)]


def test_only_site_administrators_open_the_site_log(client, appliance, site):
    assert client.get("/audit").status_code == 302  # to the sign-in page
    sign_in(client, "maint", PASSWORD)
    assert client.get("/audit").status_code == 403
    assert client.get("/audit/export.csv").status_code == 403


def test_filters_narrow_the_events(client, appliance, site):
    record(appliance, "run.started", actor="alice", target="acme/web#1", project_id=site["web"])
    record(appliance, "run.canceled", actor="Bob", target="acme/web#1", project_id=site["web"], outcome="denied")
    record(appliance, "variable.set", actor="alice", target="acme/other:100%_SURE", project_id=site["other"])
    record(appliance, "login.failed", actor="mallory", target="", outcome="failure", address="203.0.113.9")
    sign_in(client, "root", ADMIN_PASSWORD)
    everything = client.get("/audit").get_data(as_text=True)
    base = seqs(everything)[-1]  # signing in may have recorded events of its own before ours
    cases = {
        "": None,
        "?actor=ALICE": [base + 2, base],
        "?actor=ali": [],  # the whole name, not a part of it
        "?action=run.": [base + 1, base],
        "?action=run.c": [base + 1],
        "?action=%25": [],  # % is a literal character, not a LIKE wildcard
        "?target=100%25_": [base + 2],
        "?target=_": [base + 2],
        "?outcome=failure": [base + 3],
        "?outcome=denied&actor=bob": [base + 1],
        "?since=2000-01-01&until=2999-12-31&actor=mallory": [base + 3],
        "?until=2000-01-01": [],
    }
    for query, expected in cases.items():
        answer = client.get("/audit" + query)
        assert answer.status_code == 200, query
        if expected is not None:
            assert seqs(answer.get_data(as_text=True)) == expected, query
    assert "203.0.113.9" in everything and "mallory" in everything


@pytest.mark.parametrize("query, field, message", [
    ("since=yesterday", "since", "must be a date written YYYY-MM-DD"),
    ("until=2024-02-30", "until", "must be a date written YYYY-MM-DD"),
    ("since=2024-05-02&until=2024-05-01", "until", "must not be before the From date"),
    ("outcome=maybe", "outcome", "must be one of success, failure, denied"),
    ("actor=" + "x" * 256, "actor", "must be at most 255 characters"),
    ("target=" + "x" * 256, "target", "must be at most 255 characters"),
])
def test_bad_filters_are_a_422_naming_the_field(client, appliance, site, query, field, message):
    sign_in(client, "root", ADMIN_PASSWORD)
    answer = client.get("/audit?" + query)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert re.search(rf'id="{field}-error"[^>]*>.*?{re.escape(message)}', html, re.S), html
    assert seqs(html) == []
    export = client.get("/audit/export.csv?" + query)
    assert export.status_code == 422 and message in export.get_data(as_text=True)


def test_pages_go_back_by_seq_and_cover_every_event_once(client, appliance, site):
    for i in range(120):
        record(appliance, "variable.set", target=f"acme/web:V{i}", project_id=site["web"])
    sign_in(client, "root", ADMIN_PASSWORD)
    seen, url = [], "/audit?action=variable."
    while url:
        html = client.get(url).get_data(as_text=True)
        seen.extend(seqs(html))
        older = re.search(r'<a [^>]*rel="next" href="([^"]+)"', html)
        url = older.group(1).replace("&amp;", "&") if older else None
        if url:
            assert "action=variable." in url  # the filter travels with the pager
    with appliance.db.session() as s:
        expected = list(s.scalars(sa.select(AuditEvent.seq).where(AuditEvent.action == "variable.set")
                                  .order_by(AuditEvent.seq.desc())))
    assert seen == expected and len(seen) == 120
    assert client.get("/audit?before=x").status_code == 404


def test_htmx_gets_the_results_partial(client, appliance, site):
    record(appliance, "run.started", target="acme/web#1", project_id=site["web"])
    sign_in(client, "root", ADMIN_PASSWORD)
    answer = client.get("/audit?action=run.", headers={"HX-Request": "true"})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and html.lstrip().startswith('<section class="section" id="audit-results"')
    assert "<html" not in html and len(seqs(html)) == 1


def test_csv_export_is_filtered_streamed_and_safe_in_a_spreadsheet(client, appliance, site):
    hostile = ["=HYPERLINK(\"http://evil\")", "+1+1", "-2+3", "@SUM(A1)", "plain, with \"quotes\"\nand a newline"]
    for i, detail in enumerate(hostile):
        record(appliance, "variable.set", actor="=cmd" if i == 0 else "alice", target=f"acme/web:V{i}",
               project_id=site["web"], detail=detail)
    record(appliance, "run.started", target="acme/web#1", project_id=site["web"])
    sign_in(client, "root", ADMIN_PASSWORD)
    answer = client.get("/audit/export.csv?action=variable.")
    assert answer.status_code == 200 and answer.is_streamed
    assert answer.mimetype == "text/csv" and "attachment" in answer.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert rows[0] == ["seq", "time_utc", "actor", "action", "target", "project", "address", "outcome", "detail",
                       "hash"]
    body = rows[1:]
    assert [r[8] for r in body] == ["'=HYPERLINK(\"http://evil\")", "'+1+1", "'-2+3", "'@SUM(A1)",
                                    "plain, with \"quotes\"\nand a newline"]
    assert body[0][2] == "'=cmd" and {r[3] for r in body} == {"variable.set"} and {r[5] for r in body} == {"acme/web"}
    assert [int(r[0]) for r in body] == sorted(int(r[0]) for r in body)  # oldest first
    with appliance.db.session() as s:
        hashes = dict(s.execute(sa.select(AuditEvent.seq, AuditEvent.hash)).all())
    assert all(hashes[int(r[0])] == r[9] for r in body)


def test_a_project_log_shows_its_maintainers_only_that_project(client, appliance, site):
    record(appliance, "variable.set", target="acme/web:MINE", project_id=site["web"])
    record(appliance, "variable.set", target="acme/other:THEIRS", project_id=site["other"])
    record(appliance, "login", actor="maint")  # no project: site-wide only
    sign_in(client, "maint", PASSWORD)
    page = client.get("/acme/web/-/audit")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "acme/web:MINE" in html
    assert "THEIRS" not in html and len(seqs(html)) == 1
    assert 'href="/acme/web/-/audit" aria-current="page">Audit log' in html
    export = client.get("/acme/web/-/audit/export.csv").get_data(as_text=True)
    assert "MINE" in export and "THEIRS" not in export
    assert client.get("/acme/other/-/audit").status_code == 404  # not a member: existence not confirmed
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    sign_in(client, "dev", PASSWORD)
    assert client.get("/acme/web/-/audit").status_code == 403
    assert client.get("/acme/web/-/audit/export.csv").status_code == 403


def test_output_is_escaped(client, appliance, site):
    record(appliance, "variable.set", actor="<b>x</b>", target="<script>alert(1)</script>", project_id=site["web"],
           detail="<img src=x onerror=alert(1)>")
    sign_in(client, "root", ADMIN_PASSWORD)
    html = client.get("/audit").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "<img src=x" not in html and "<b>x</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
