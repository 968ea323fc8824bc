"""Project variables and secrets: the service on SQLite and PostgreSQL, and the pages
(list, add, edit, delete with confirmation, pipeline settings) through Flask's test
client with the real forms, CSRF tokens included; permissions by role.
"""

from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa

from appliance import migrate
from appliance.accounts import organisations, users
from appliance.context import Appliance
from appliance.errors import NotFound, ValidationError
from appliance.models import AuditEvent, Project, ProjectVariable, Role
from appliance.pipelines import variables
from appliance.pipelines.secrets import SecretBox, place
from conftest import ADMIN_PASSWORD, AuthActions, csrf_token, make_config

PASSWORD = "a long enough password"
SECRET = "tok-9f8e7d6c5b4a-s3cr3t"


# -- the service, on both database backends -----------------------------------------------


@pytest.fixture
def svc(tmp_path, db_values):
    app = Appliance(make_config(tmp_path / "data", **db_values))
    migrate.upgrade(app.db)
    with app.db.session() as s:
        org = organisations.create_organisation(s, "acme")
        for name in ("web", "api"):
            organisations.create_project(s, org, name)
    yield app
    app.close()


def project(s, name: str = "web") -> Project:
    return organisations.get_project(s, f"acme/{name}")


def test_set_list_and_job_environment(svc):
    box = SecretBox.from_config(svc.config)
    with svc.db.session() as s:
        web = project(s)
        variables.set_variable(s, box, web, "REGION", "eu-west", secret=False)
        variables.set_variable(s, box, web, "TOKEN", SECRET, secret=True)
        variables.set_variable(s, box, web, "EMPTY", "", secret=False)
        variables.set_variable(s, box, web, "PEM", "-----BEGIN-----\nabc\tdef\n-----END-----", secret=True)
        variables.set_variable(s, box, project(s, "api"), "REGION", "us-east", secret=False)
    with svc.db.session() as s:
        web = project(s)
        rows = variables.list_variables(s, web)
        assert [r.name for r in rows] == ["EMPTY", "PEM", "REGION", "TOKEN"]
        token = next(r for r in rows if r.name == "TOKEN")
        assert token.is_secret and token.value == "" and token.ciphertext and SECRET.encode() not in token.ciphertext
        env, masked = variables.job_environment(s, box, web)
        assert env == {"REGION": "eu-west", "TOKEN": SECRET, "EMPTY": "",
                       "PEM": "-----BEGIN-----\nabc\tdef\n-----END-----"}
        assert sorted(masked) == sorted([SECRET, "-----BEGIN-----\nabc\tdef\n-----END-----"])
        assert variables.job_environment(s, box, project(s, "api")) == ({"REGION": "us-east"}, [])


def test_updating_keeps_the_kind_unless_told(svc):
    box = SecretBox.from_config(svc.config)
    with svc.db.session() as s:
        web = project(s)
        first = variables.set_variable(s, box, web, "TOKEN", SECRET, secret=True).ciphertext
        row = variables.set_variable(s, box, web, "TOKEN", "another-secret-value")  # kind not given: stays secret
        assert row.is_secret and row.value == "" and row.ciphertext != first
        assert box.decrypt(row.ciphertext, place(web.id, "TOKEN")) == "another-secret-value"
        with pytest.raises(ValidationError) as info:
            variables.set_variable(s, box, web, "TOKEN", "short")  # still a secret, so secret rules apply
        assert info.value.field == "value"
        row = variables.set_variable(s, box, web, "TOKEN", "now plain", secret=False)
        assert not row.is_secret and row.value == "now plain" and row.ciphertext is None
        assert not variables.set_variable(s, box, web, "NEW", "x").is_secret  # a new one is plain
        row = variables.set_variable(s, box, web, "NEW", "made-secret", secret=True)
        assert row.is_secret and row.value == ""
    with svc.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ProjectVariable)) == 2


def test_delete(svc):
    box = SecretBox.from_config(svc.config)
    with svc.db.session() as s:
        variables.set_variable(s, box, project(s), "TOKEN", SECRET, secret=True)
        variables.set_variable(s, box, project(s, "api"), "TOKEN", SECRET, secret=True)
    with svc.db.session() as s:
        variables.delete_variable(s, project(s), "TOKEN")
        with pytest.raises(NotFound):
            variables.delete_variable(s, project(s), "TOKEN")
        assert [r.name for r in variables.list_variables(s, project(s, "api"))] == ["TOKEN"]


BAD = [
    ("", "v", False, "name", "is required"),
    ("1ABC", "v", False, "name", "must start with a letter"),
    ("MY-VAR", "v", False, "name", "must start with a letter"),
    ("caf\u00e9", "v", False, "name", "must start with a letter"),
    ("A" * 101, "v", False, "name", "at most 100"),
    ("PRTS_TOKEN", "v", False, "name", "may not be PRTS_TOKEN"),
    ("prts_token", "v", False, "name", "may not be"),
    ("CI", "v", False, "name", "may not be CI"),
    ("OK", "x" * (64 * 1024 + 1), False, "value", "at most 65536"),
    ("OK", "a\x00b", False, "value", "NUL"),
    ("OK", "12345", True, "value", "at least 6 bytes"),
    ("OK", "abc\x01defgh", True, "value", "control characters"),
    ("OK", "abcdefgh\r\n", True, "value", "control characters"),
    ("OK", "abcdefgh\x85", True, "value", "control characters"),
    ("OK", "abc\ud800defgh", True, "value", "lone surrogate"),
    ("OK", "x" * (64 * 1024 + 1), True, "value", "at most 65536"),
]


@pytest.mark.parametrize("name, value, secret, field, fragment", BAD)
def test_validation_errors_name_the_field_and_never_quote_the_value(svc, name, value, secret, field, fragment):
    box = SecretBox.from_config(svc.config)
    with svc.db.session() as s:
        with pytest.raises(ValidationError) as info:
            variables.set_variable(s, box, project(s), name, value, secret=secret)
        assert info.value.field == field and fragment in info.value.message
        if field == "value":
            assert value not in str(info.value)
        assert variables.list_variables(s, project(s)) == []


def test_edge_values_that_are_allowed(svc):
    box = SecretBox.from_config(svc.config)
    with svc.db.session() as s:
        web = project(s)
        variables.set_variable(s, box, web, "_", "x", secret=False)
        variables.set_variable(s, box, web, "A" * 100, "six!!!", secret=True)
        variables.set_variable(s, box, web, "BIG", "y" * (64 * 1024), secret=True)
        variables.set_variable(s, box, web, "ESC", "colour \x1b[31m plain is fine", secret=False)
        env, _ = variables.job_environment(s, box, web)
        assert env["BIG"] == "y" * (64 * 1024) and env["A" * 100] == "six!!!"


def test_pipeline_settings(svc):
    with svc.db.session() as s:
        web = project(s)
        assert web.job_concurrency == 0 and web.cancel_superseded is True
        variables.set_pipeline_settings(s, web, job_concurrency=3, cancel_superseded=False)
        for bad in (-1, 1001, True, "3"):
            with pytest.raises(ValidationError) as info:
                variables.set_pipeline_settings(s, web, job_concurrency=bad, cancel_superseded=True)
            assert info.value.field == "job_concurrency"
    with svc.db.session() as s:
        web = project(s)
        assert (web.job_concurrency, web.cancel_superseded) == (3, False)


# -- the pages ----------------------------------------------------------------------------


@pytest.fixture
def people(appliance, admin):
    """acme/web with a viewer, a developer and a maintainer, someone outside it, and two
    variables: a plain one and a secret."""
    with appliance.db.session() as s:
        org = organisations.create_organisation(s, "acme")
        web = organisations.create_project(s, org, "web")
        for username, role in (("viewer", Role.VIEWER), ("dev", Role.DEVELOPER), ("maint", Role.MAINTAINER),
                               ("outsider", None)):
            user = users.create_user(s, username, PASSWORD)
            if role is not None:
                organisations.grant(s, user, web, role)
        box = SecretBox.from_config(appliance.config)
        variables.set_variable(s, box, web, "REGION", "eu-west-1", secret=False)
        variables.set_variable(s, box, web, "DEPLOY_TOKEN", SECRET, secret=True)


def login(client, username: str):
    response = AuthActions(client).login(username, ADMIN_PASSWORD if username == "root" else PASSWORD)
    assert response.status_code == 302, response.get_data(as_text=True)


def token(client, url: str = "/acme/web/-/variables") -> str:
    page = client.get(url)
    return csrf_token(page.get_data(as_text=True))


def field_error(page: str, field: str) -> str:
    match = re.search(rf'id="{field}-error">(.*?)</ul>', page, re.S)
    assert match, f"no inline error for {field}"
    return html.unescape(re.sub(r"<[^>]+>", " ", match.group(1)))


def stored(appliance) -> dict[str, ProjectVariable]:
    with appliance.db.session() as s:
        return {r.name: r for r in s.scalars(sa.select(ProjectVariable))}


def test_an_outsider_gets_404_and_a_viewer_403(client, people):
    login(client, "outsider")
    for url in ("/acme/web/-/variables", "/acme/web/-/variables/REGION/edit", "/acme/web/-/settings/pipelines",
                "/acme/nope/-/variables"):
        assert client.get(url).status_code == 404, url
    AuthActions(client).logout()
    login(client, "viewer")
    assert client.get("/acme/web/-/variables").status_code == 403
    assert client.get("/acme/web/-/variables/REGION/edit").status_code == 403
    csrf = token(client, "/acme/web/-/settings/pipelines")
    for url in ("/acme/web/-/variables", "/acme/web/-/variables/REGION/edit", "/acme/web/-/variables/REGION/delete"):
        assert client.post(url, data={"csrf_token": csrf, "name": "X", "value": "v"}).status_code == 403, url
    # The viewer may read the pipeline settings (every member sees how pipelines run), not change them.
    page = client.get("/acme/web/-/settings/pipelines")
    assert page.status_code == 200 and b"pipeline-settings-form" not in page.data
    assert client.post("/acme/web/-/settings/pipelines", data={"csrf_token": csrf, "job_concurrency": "2"}).status_code == 403


def test_signed_out_is_sent_to_sign_in(client, people):
    response = client.get("/acme/web/-/variables")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_developer_sees_names_and_plain_values_but_cannot_change_anything(client, people, appliance):
    login(client, "dev")
    page = client.get("/acme/web/-/variables")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "REGION" in text and "eu-west-1" in text and "DEPLOY_TOKEN" in text
    assert "(secret, set " in text and SECRET not in text
    assert 'id="variable-form"' not in text and "/edit" not in text
    csrf = csrf_token(text)
    before = {n: (r.value, r.ciphertext) for n, r in stored(appliance).items()}
    assert client.post("/acme/web/-/variables", data={"csrf_token": csrf, "name": "NEW", "value": "v"}).status_code == 403
    assert client.post("/acme/web/-/variables/REGION/edit",
                       data={"csrf_token": csrf, "value": "changed"}).status_code == 403
    assert client.post("/acme/web/-/variables/DEPLOY_TOKEN/delete", data={"csrf_token": csrf}).status_code == 403
    assert client.get("/acme/web/-/variables/REGION/edit").status_code == 403
    assert client.get("/acme/web/-/variables/REGION/delete").status_code == 403
    assert client.post("/acme/web/-/settings/pipelines",
                       data={"csrf_token": csrf, "job_concurrency": "9"}).status_code == 403
    assert {n: (r.value, r.ciphertext) for n, r in stored(appliance).items()} == before


def test_a_maintainer_adds_edits_and_deletes(client, people, appliance):
    login(client, "maint")
    csrf = token(client)
    response = client.post("/acme/web/-/variables", data={"csrf_token": csrf, "name": "API_KEY",
                                                          "value": "k-1234567890", "secret": "y"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/acme/web/-/variables")
    page = client.get("/acme/web/-/variables").get_data(as_text=True)
    assert "The secret API_KEY was added." in page and "k-1234567890" not in page
    assert stored(appliance)["API_KEY"].is_secret

    response = client.post("/acme/web/-/variables", data={"csrf_token": csrf, "name": "  LEVEL ", "value": "a\r\nb"})
    assert response.status_code == 302
    assert stored(appliance)["LEVEL"].value == "a\nb"  # trimmed name, the browser's CRLF made LF

    # The edit form of a plain variable holds its value; a secret's holds nothing.
    edit = client.get("/acme/web/-/variables/REGION/edit").get_data(as_text=True)
    assert re.search(r'<textarea[^>]*name="value"[^>]*>\s*eu-west-1</textarea>', edit)
    edit = client.get("/acme/web/-/variables/API_KEY/edit").get_data(as_text=True)
    assert re.search(r'<textarea[^>]*name="value"[^>]*>\s*</textarea>', edit)
    assert re.search(r'<input[^>]*checked[^>]*name="secret"|<input[^>]*name="secret"[^>]*checked', edit)

    response = client.post("/acme/web/-/variables/REGION/edit", data={"csrf_token": csrf, "value": "us-east-2"})
    assert response.status_code == 302
    response = client.post("/acme/web/-/variables/API_KEY/edit",
                           data={"csrf_token": csrf, "value": "k-new-0987654321", "secret": "y"})
    assert response.status_code == 302
    rows = stored(appliance)
    assert rows["REGION"].value == "us-east-2" and not rows["REGION"].is_secret
    with appliance.db.session() as s:
        env, masked = variables.job_environment(s, SecretBox.from_config(appliance.config),
                                                organisations.get_project(s, "acme/web"))
    assert env["API_KEY"] == "k-new-0987654321" and "k-new-0987654321" in masked

    # Deleting goes through a confirmation page whose form carries a CSRF token.
    confirm = client.get("/acme/web/-/variables/API_KEY/delete")
    assert confirm.status_code == 200 and b"Delete API_KEY" in confirm.data
    assert 'name="csrf_token"' in confirm.get_data(as_text=True)
    response = client.post("/acme/web/-/variables/API_KEY/delete", data={"csrf_token": csrf_token(confirm.get_data(as_text=True))})
    assert response.status_code == 302
    assert "API_KEY" not in stored(appliance)
    assert client.post("/acme/web/-/variables/API_KEY/delete", data={"csrf_token": csrf}).status_code == 404
    assert client.get("/acme/web/-/variables/API_KEY/edit").status_code == 404


@pytest.mark.parametrize("data, field, message", [
    ({"name": "1BAD", "value": "v"}, "name", "Name must start with a letter or _"),
    ({"name": "PRTS_X", "value": "v"}, "name", "Name may not be PRTS_X"),
    ({"name": "", "value": "v"}, "name", "Name is required."),
    ({"name": "REGION", "value": "v"}, "name", "REGION already exists"),
    ({"name": "T", "value": "short", "secret": "y"}, "value", "Value must be at least 6 bytes for a secret"),
    ({"name": "T", "value": "bell\x07rings-here", "secret": "y"}, "value", "Value may not hold control characters"),
    ({"name": "T", "value": "z" * (64 * 1024 + 1)}, "value", "at most 65536 are allowed"),
])
def test_validation_errors_are_inline_under_the_field_they_name(client, people, appliance, data, field, message):
    login(client, "maint")
    csrf = token(client)
    response = client.post("/acme/web/-/variables", data={"csrf_token": csrf, **data})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in field_error(page, field)
    assert "<html" in page  # a whole page without htmx
    response = client.post("/acme/web/-/variables", data={"csrf_token": csrf, **data}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    fragment = response.get_data(as_text=True)
    assert fragment.lstrip().startswith("<form") and "<html" not in fragment
    assert message in field_error(fragment, field)
    assert sorted(stored(appliance)) == ["DEPLOY_TOKEN", "REGION"]


def test_htmx_success_redirects_with_hx_redirect(client, people, appliance):
    login(client, "maint")
    response = client.post("/acme/web/-/variables", data={"csrf_token": token(client), "name": "X1", "value": "1"},
                           headers={"HX-Request": "true"})
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/acme/web/-/variables"
    assert stored(appliance)["X1"].value == "1"


def test_edit_errors_are_inline_and_keep_the_stored_value(client, people, appliance):
    login(client, "maint")
    before = stored(appliance)["DEPLOY_TOKEN"].ciphertext
    response = client.post("/acme/web/-/variables/DEPLOY_TOKEN/edit",
                           data={"csrf_token": token(client), "value": "tiny", "secret": "y"})
    assert response.status_code == 422
    assert "Value must be at least 6 bytes" in field_error(response.get_data(as_text=True), "value")
    assert stored(appliance)["DEPLOY_TOKEN"].ciphertext == before


def test_a_post_without_a_valid_csrf_token_is_refused(flask_app, client, people, appliance):
    assert flask_app.config.get("WTF_CSRF_ENABLED", True) is not False  # the tests run with CSRF on
    login(client, "maint")
    before = {n: (r.value, r.ciphertext) for n, r in stored(appliance).items()}
    for headers, data in (({}, {}), ({}, {"csrf_token": "forged"}), ({"X-CSRFToken": "forged"}, {})):
        for url, form in (("/acme/web/-/variables", {"name": "EVIL", "value": "x"}),
                          ("/acme/web/-/variables/REGION/edit", {"value": "evil"}),
                          ("/acme/web/-/variables/DEPLOY_TOKEN/delete", {}),
                          ("/acme/web/-/settings/pipelines", {"job_concurrency": "7"})):
            response = client.post(url, data={**form, **data}, headers=headers)
            assert response.status_code == 400, (url, headers, data)
    assert {n: (r.value, r.ciphertext) for n, r in stored(appliance).items()} == before
    with appliance.db.session() as s:
        assert organisations.get_project(s, "acme/web").job_concurrency == 0


def test_pipeline_settings_form(client, people, appliance):
    login(client, "maint")
    page = client.get("/acme/web/-/settings/pipelines")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="pipeline-settings-form"' in text
    assert re.search(r'name="job_concurrency"[^>]*value="0"|value="0"[^>]*name="job_concurrency"', text)
    assert "0 uses the appliance default, currently 4." in text
    csrf = csrf_token(text)
    response = client.post("/acme/web/-/settings/pipelines", data={"csrf_token": csrf, "job_concurrency": "3"})
    assert response.status_code == 302  # cancel_superseded unticked: off
    with appliance.db.session() as s:
        web = organisations.get_project(s, "acme/web")
        assert (web.job_concurrency, web.cancel_superseded) == (3, False)
    for value, message in (("-1", "Jobs running at once must be between 0 and 1000."),
                           ("1001", "Jobs running at once must be between 0 and 1000."),
                           ("many", "Jobs running at once must be a whole number."),
                           ("", "Jobs running at once is required.")):
        response = client.post("/acme/web/-/settings/pipelines",
                               data={"csrf_token": csrf, "job_concurrency": value, "cancel_superseded": "y"},
                               headers={"HX-Request": "true"})
        assert response.status_code == 422
        assert message in field_error(response.get_data(as_text=True), "job_concurrency")
    response = client.post("/acme/web/-/settings/pipelines",
                           data={"csrf_token": csrf, "job_concurrency": "0", "cancel_superseded": "y"},
                           headers={"HX-Request": "true"})
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/acme/web/-/settings/pipelines"
    with appliance.db.session() as s:
        web = organisations.get_project(s, "acme/web")
        assert (web.job_concurrency, web.cancel_superseded) == (0, True)


def test_a_developer_reads_the_pipeline_settings(client, people):
    login(client, "dev")
    page = client.get("/acme/web/-/settings/pipelines")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "pipeline-settings-form" not in text
    assert "Only Maintainers can change these settings." in text


def test_user_data_is_escaped(client, people, appliance):
    with appliance.db.session() as s:
        variables.set_variable(s, SecretBox.from_config(appliance.config), organisations.get_project(s, "acme/web"),
                               "HTML", '<script>alert(1)</script>" hx-get="/x', secret=False)
    login(client, "dev")
    text = client.get("/acme/web/-/variables").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text
    assert 'hx-get="/x' not in text


# -- a secret sent in a form never comes back ---------------------------------------------

TYPED = "typed-Secret-7c2e91ab"  # what a Maintainer typed into a form that then had errors


def assert_not_echoed(page: str, value: str = TYPED) -> None:
    assert value not in page and html.escape(value) not in page and value.lower() not in page.lower()


@pytest.mark.parametrize("htmx", [False, True])
def test_a_form_with_errors_does_not_echo_the_secret_it_was_sent(client, people, appliance, htmx):
    login(client, "maint")
    headers = {"HX-Request": "true"} if htmx else {}
    for name in ("1BAD name", "PRTS_TOKEN", "DEPLOY_TOKEN"):  # bad, reserved, existing: the value was fine
        response = client.post("/acme/web/-/variables", headers=headers,
                               data={"csrf_token": token(client), "name": name, "value": TYPED, "secret": "y"})
        page = response.get_data(as_text=True)
        assert response.status_code == 422 and field_error(page, "name"), name
        assert_not_echoed(page)
        assert re.search(r'<textarea[^>]*name="value"[^>]*>\s*</textarea>', page), "the value field is emptied"
    # The edit form of a secret, with an error on the value: nothing typed comes back.
    for value in (TYPED + "\x1b[2K", TYPED + "\x00"):
        response = client.post("/acme/web/-/variables/DEPLOY_TOKEN/edit", headers=headers,
                               data={"csrf_token": token(client), "value": value, "secret": "y"})
        assert response.status_code == 422
        assert_not_echoed(response.get_data(as_text=True))
    # Nor when "secret" was unticked on a secret's edit form.
    response = client.post("/acme/web/-/variables/DEPLOY_TOKEN/edit", headers=headers,
                           data={"csrf_token": token(client), "value": TYPED + "\x00"})
    assert response.status_code == 422
    assert_not_echoed(response.get_data(as_text=True))
    assert sorted(stored(appliance)) == ["DEPLOY_TOKEN", "REGION"]
    for url in ("/acme/web/-/variables", "/acme/web/-/variables/DEPLOY_TOKEN/edit",
                "/acme/web/-/variables/DEPLOY_TOKEN/delete", "/acme/web/-/settings/pipelines", "/acme/web"):
        assert_not_echoed(client.get(url).get_data(as_text=True), SECRET)


def test_an_empty_value_on_a_secrets_edit_form_says_why(client, people, appliance):
    login(client, "maint")
    response = client.post("/acme/web/-/variables/DEPLOY_TOKEN/edit",
                           data={"csrf_token": token(client), "value": "", "secret": "y"})
    assert response.status_code == 422
    assert "the current one is never shown" in field_error(response.get_data(as_text=True), "value")


def test_changes_are_recorded_as_events_without_values(client, people, appliance):
    login(client, "maint")
    client.post("/acme/web/-/variables", data={"csrf_token": token(client), "name": "API_KEY", "value": TYPED,
                                               "secret": "y"})
    client.post("/acme/web/-/variables/API_KEY/edit", data={"csrf_token": token(client), "value": TYPED + "2",
                                                            "secret": "y"})
    client.post("/acme/web/-/variables/API_KEY/delete", data={"csrf_token": token(client)})
    client.post("/acme/web/-/settings/pipelines", data={"csrf_token": token(client), "job_concurrency": "3"})
    with appliance.db.session() as s:
        events = [e for e in s.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)) if e.action != "login"]
    assert [e.action for e in events] == ["variable.set", "variable.set", "variable.deleted",
                                          "pipeline.settings_changed"]
    for event in events[:3]:
        assert (event.actor, event.target, event.outcome) == ("maint", "acme/web:API_KEY", "success")
    assert [e.detail for e in events[:2]] == ["added (secret)", "changed (secret)"]
    assert TYPED not in repr([(e.target, e.detail) for e in events])


def test_the_project_tabs_link_the_variables_and_settings_pages(client, people):
    login(client, "maint")
    page = client.get("/acme/web/-/variables").get_data(as_text=True)
    assert 'href="/acme/web/-/variables" aria-current="page">Variables' in page
    assert 'href="/acme/web/-/settings/pipelines">Settings' in page
