"""A project secret's plaintext is stored nowhere and shown nowhere.

On SQLite and on a real PostgreSQL server: the plaintext (and its base64 and hex forms)
is not in any column of its row, not in any file of the data directory (SQLite database,
WAL, queue), and not in the PostgreSQL database's files or WAL after a checkpoint. A plain
variable stored alongside is found by the same search, so the search can fail. Through the
web pages, the plaintext is in no response after saving: not the list, not the edit form,
not the delete confirmation, not a form sent back with errors (htmx or not), and not in
any log record. A ciphertext copied to another row does not decrypt, and another key is
told apart from damage.
"""

from __future__ import annotations

import base64
import html
import logging
import os
import secrets
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance import migrate
from appliance.accounts import organisations, users
from appliance.context import Appliance
from appliance.models import Role
from appliance.pipelines import variables
from appliance.pipelines.secrets import SecretBox, SecretCorruptError, SecretKeyError, new_key_text
from conftest import ADMIN_PASSWORD, AuthActions, csrf_token, make_config, web_app_for

PASSWORD = "a long enough password"


def forms_of(text: str) -> list[bytes]:
    raw = text.encode()
    return [raw, base64.b64encode(raw), raw.hex().encode(), html.escape(text).encode(), text.encode("utf-16-le")]


@pytest.fixture
def stack(tmp_path, db_values):
    config = make_config(tmp_path / "data", **db_values)
    app = Appliance(config)
    migrate.upgrade(app.db)
    with app.db.session() as s:
        users.create_user(s, "root", ADMIN_PASSWORD, is_admin=True)
        org = organisations.create_organisation(s, "acme")
        web = organisations.create_project(s, org, "web")
        organisations.create_project(s, org, "api")
        for username, role in (("maint", Role.MAINTAINER), ("dev", Role.DEVELOPER)):
            organisations.grant(s, users.create_user(s, username, PASSWORD), web, role)
    yield app
    app.close()


@pytest.fixture
def web_client(stack):
    flask_app = web_app_for(stack)
    return flask_app.test_client()


def login(client, username: str) -> None:
    response = AuthActions(client).login(username, PASSWORD)
    assert response.status_code == 302


def _files_under(root: Path, since: float | None = None):
    for path in root.rglob("*"):
        if path.is_file() and (since is None or path.stat().st_mtime >= since):
            yield path


def _stored_bytes(app: Appliance, db_backend: str, request, since: float) -> bytes:
    """Every byte the database (and the data directory) holds after the writes."""
    chunks = [p.read_bytes() for p in _files_under(app.config.data_path)]
    if db_backend == "postgresql":
        server = request.getfixturevalue("postgres_server")
        with app.db.engine.connect() as conn:
            oid = conn.scalar(sa.text("SELECT oid FROM pg_database WHERE datname = current_database()"))
            conn.execute(sa.text("COMMIT"))
            conn.execute(sa.text("CHECKPOINT"))  # dirty pages and WAL onto disk
        data_dir = Path(server.data_dir)
        chunks += [p.read_bytes() for p in _files_under(data_dir / "base" / str(oid))]
        chunks += [p.read_bytes() for p in _files_under(data_dir / "pg_wal", since=since - 5)]
    return b"".join(chunks)


def test_the_plaintext_is_in_no_row_and_no_file(stack, db_backend, request):
    since = time.time()
    secret = f"prts-secret-{secrets.token_hex(12)}"
    canary = f"prts-plain-{secrets.token_hex(12)}"
    box = SecretBox.from_config(stack.config)
    with stack.db.session() as s:
        web = organisations.get_project(s, "acme/web")
        variables.set_variable(s, box, web, "DEPLOY_TOKEN", secret, secret=True)
        variables.set_variable(s, box, web, "CANARY", canary, secret=False)
        # Updating re-encrypts; the old ciphertext is replaced, not kept beside it.
        variables.set_variable(s, box, web, "DEPLOY_TOKEN", secret + "-v2", secret=True)

    with stack.db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, is_secret, value, ciphertext FROM project_variables")).all()
    row = next(r for r in rows if r.name == "DEPLOY_TOKEN")
    assert row.is_secret and row.value == "" and row.ciphertext
    for form in forms_of(secret):
        assert form not in bytes(row.ciphertext)
        assert all(form not in str(tuple(r)).encode() for r in rows)

    blob = _stored_bytes(stack, db_backend, request, since)
    assert canary.encode() in blob, "the search does not see stored data; it proves nothing"
    for form in forms_of(secret):
        assert form not in blob

    # ... and yet a job gets it: what is stored is the real thing, encrypted.
    with stack.db.session() as s:
        env, masked = variables.job_environment(s, box, organisations.get_project(s, "acme/web"))
    assert env["DEPLOY_TOKEN"] == secret + "-v2" and masked == [secret + "-v2"]


def test_a_ciphertext_copied_to_another_row_or_project_does_not_decrypt(stack):
    box = SecretBox.from_config(stack.config)
    with stack.db.session() as s:
        web = organisations.get_project(s, "acme/web")
        api = organisations.get_project(s, "acme/api")
        variables.set_variable(s, box, web, "TOKEN", "web-secret-value", secret=True)
        variables.set_variable(s, box, api, "TOKEN", "api-secret-value", secret=True)
        variables.set_variable(s, box, web, "OTHER", "other-secret-value", secret=True)
        web_id, api_id = web.id, api.id
    copy = sa.text("UPDATE project_variables SET ciphertext = (SELECT ciphertext FROM project_variables "
                   "WHERE project_id = :src AND name = 'TOKEN') WHERE project_id = :dst AND name = :name")
    with stack.db.engine.begin() as conn:
        conn.execute(copy, {"src": web_id, "dst": api_id, "name": "TOKEN"})  # to another project
        conn.execute(copy, {"src": web_id, "dst": web_id, "name": "OTHER"})  # to another variable
    with stack.db.session() as s:
        for path in ("acme/api", "acme/web"):
            with pytest.raises(SecretCorruptError) as info:
                variables.job_environment(s, box, organisations.get_project(s, path))
            assert "web-secret-value" not in str(info.value)


def test_another_key_is_reported_as_such(stack, tmp_path):
    with stack.db.session() as s:
        variables.set_variable(s, SecretBox.from_config(stack.config), organisations.get_project(s, "acme/web"),
                               "TOKEN", "web-secret-value", secret=True)
    other = SecretBox.from_config(stack.config.with_overrides(secrets__key=new_key_text()))
    with stack.db.session() as s:
        with pytest.raises(SecretKeyError):
            variables.job_environment(s, other, organisations.get_project(s, "acme/web"))


def test_the_plaintext_is_in_no_response_and_no_log(stack, web_client, caplog):
    caplog.set_level(logging.DEBUG)
    secret = f"web-secret-{secrets.token_hex(12)}"
    forbidden = forms_of(secret)
    client = web_client
    login(client, "maint")
    responses = []

    def post(url, data, htmx=False, follow=False):
        token = csrf_token(client.get("/acme/web/-/variables").get_data(as_text=True))
        headers = {"HX-Request": "true"} if htmx else {}
        response = client.post(url, data={"csrf_token": token, **data}, headers=headers, follow_redirects=follow)
        responses.append(response)
        return response

    # Saved without and with htmx; the redirect's page (with its flash message) is checked too.
    assert post("/acme/web/-/variables", {"name": "TOKEN", "value": secret, "secret": "y"}, follow=True).status_code == 200
    assert post("/acme/web/-/variables", {"name": "TOKEN2", "value": secret, "secret": "y"}, htmx=True).status_code == 204
    # Forms sent back with errors: a taken name, a bad name, a bad value, an edit gone wrong.
    errors = [
        ("/acme/web/-/variables", {"name": "TOKEN", "value": secret, "secret": "y"}),
        ("/acme/web/-/variables", {"name": "PRTS_TOKEN", "value": secret, "secret": "y"}),
        ("/acme/web/-/variables", {"name": "9TOKEN", "value": secret, "secret": "y"}),
        ("/acme/web/-/variables", {"name": "NEW", "value": secret + "\x07", "secret": "y"}),
        ("/acme/web/-/variables", {"name": "N" * 101, "value": secret, "secret": "y"}),
        ("/acme/web/-/variables/TOKEN/edit", {"value": secret + "\x01", "secret": "y"}),
        ("/acme/web/-/variables/TOKEN/edit", {"value": secret + "\x00"}),  # turning it plain, refused
    ]
    for url, data in errors:
        for htmx in (False, True):
            assert post(url, data, htmx=htmx).status_code == 422, (url, data, htmx)
    # Every page that shows the variable.
    for url in ("/acme/web/-/variables", "/acme/web/-/variables/TOKEN/edit", "/acme/web/-/variables/TOKEN/delete",
                "/acme/web/-/settings/pipelines", "/acme/web"):
        responses.append(client.get(url))
        responses.append(client.get(url, headers={"HX-Request": "true"}))
    AuthActions(client).logout()
    login(client, "dev")
    responses.append(client.get("/acme/web/-/variables"))

    with stack.db.session() as s:
        env, _ = variables.job_environment(s, SecretBox.from_config(stack.config),
                                           organisations.get_project(s, "acme/web"))
    assert env["TOKEN"] == secret and env["TOKEN2"] == secret  # both were really saved

    assert len(responses) > 20
    for response in responses:
        body = response.get_data()
        headers = str(response.headers).encode()
        for form in forbidden:
            assert form not in body, (response.request.path, response.status_code)
            assert form not in headers
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + str(record.exc_info or "")
        assert secret not in text, record.name


def test_the_key_file_is_private(stack):
    SecretBox.from_config(stack.config)
    path = stack.config.data_path / "secrets.key"
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)
