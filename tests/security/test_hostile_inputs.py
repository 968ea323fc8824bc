"""Hostile inputs against the web app, one parametrised case each, and their tally.

Every case sends a hostile request through Flask's test client into one shared world of
two organisations (``hostile_kit.build_world``, on SQLite: the database is not the surface
here) and classifies what happened:

- refused: a 4xx or a redirect to the sign-in page, and no state changed;
- ACCEPTED: state changed (read back from the database, not guessed from the status), data
  leaked, or a 2xx/redirect where a refusal was required;
- SERVER ERROR: any 5xx on the way, always a failure;
- UNCLEAR: refused, but without naming the field that was wrong.

A case fails unless refused. ``test_zz_control_*`` sends each state-changing request of the
CSRF table with a valid token and checks that it did change its state, so no CSRF case can
pass only because its check cannot see a change. ``test_zzz_report`` prints
"hostile inputs: N tried, A accepted, E server errors" and names the cases that got through.

Surfaces: CSRF (missing, another session's, pre-login, in the query string, bad htmx header,
tampered, from before a new sign-in, a bearer header instead), forged HX-Request, session
fixation and cookie replay, IDOR across organisations, token scope escalation, open
redirects in ``next=``, oversized fields and bodies.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from types import SimpleNamespace
from typing import Callable
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from appliance import repos
from appliance.accounts import organisations, tokens, users
from appliance.hosting import merge_requests, outbound, protection
from appliance.models import ApiToken, MergeRequest, Project, Role
from appliance.pipelines import schedules, variables
from appliance.pipelines.secrets import SecretBox
from hostile_kit import (
    ACCEPTED, PASSWORD, REFUSED, SECRET_VALUE, SERVER_ERROR, UNCLEAR, WEBHOOK_HOST, Attempt, TrackingClient, Verdict,
    basic, build_world, delivery_count, is_refusal, job_state, leaves_the_site, page_token,
    password_works, project_exists, run_count, run_status, schedule_count, schedule_state, sign_in, signed_in_as,
    start_run,
    token_count, token_live, variable_value, webhook_count, webhook_state,
)
from pipelinekit import commit

COOKIE = "prts_session"
FRESH = "<fresh>"  # the attempt's actor is a throw-away account made for it
HX = {"HX-Request": "true", "HX-Target": "main", "HX-Current-URL": "http://localhost/"}

RESULTS: list[Verdict] = []


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[Attempt], None]


CASES: list[Case] = []


def case(case_id: str):
    def register(fn: Callable[[Attempt], None]):
        CASES.append(Case(case_id, fn))
        return fn

    return register


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from webapp import create_app

    def flask_factory(app):
        flask = create_app(app.config)
        flask.extensions["prts"] = app  # one database for the world and the app
        flask.test_client_class = TrackingClient
        return flask

    built = build_world(tmp_path_factory.mktemp("hostile") / "data", flask_factory)
    yield built
    built.app.close()


# -- victims made per attempt, so an accepted attempt spoils nothing later ones need ----------


def make_variable(a: Attempt, project_id: int, name: str) -> None:
    with a.world.app.db.session() as s:
        variables.set_variable(s, SecretBox.from_config(a.world.app.config), s.get(Project, project_id), name,
                               "victim-value", secret=False)


def make_webhook(a: Attempt, project_id: int) -> int:
    with a.world.app.db.session() as s:
        hook, _ = outbound.create_webhook(s, s.get(Project, project_id), f"http://{WEBHOOK_HOST}:9/{a.marker}", ["run"],
                                          a.world.app.config)
        return hook.id


def make_schedule(a: Attempt, project_id: int) -> int:
    with a.world.app.db.session() as s:
        return schedules.add_schedule(s, s.get(Project, project_id), "0 5 * * *", "main", a.marker).id


def make_token(a: Attempt, username: str, **kw) -> tuple[int, str]:
    with a.world.app.db.session() as s:
        row, text = tokens.create_token(s, users.find_user(s, username), a.marker, "read", **kw)
        return row.id, text


def make_merge_request(a: Attempt, project_id: int) -> int:
    commit(a.world.app, project_id, {f"{a.marker}.txt": "x\n"}, branch=a.marker)
    with a.world.app.db.session() as s:
        root = users.find_user(s, "root")
        s.expunge(root)
    return merge_requests.open_merge_request(a.world.app, project_id, source=a.marker, target="main",
                                             title=a.marker, author=root).number


def merge_request_state(a: Attempt, project_id: int, number: int) -> str | None:
    with a.world.app.db.session() as s:
        return s.scalar(sa.select(MergeRequest.state).where(MergeRequest.project_id == project_id,
                                                            MergeRequest.number == number))


def merge_request_titled(a: Attempt, title: str) -> bool:
    with a.world.app.db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(MergeRequest).where(MergeRequest.title == title)) > 0


def project_row(a: Attempt, project_id: int) -> tuple:
    with a.world.app.db.session() as s:
        p = s.get(Project, project_id)
        return (p.job_concurrency, p.cancel_superseded, p.default_branch, p.mirror_url,
                protection.patterns(s, p), p.inbound_secret_ciphertext)


def refs(a: Attempt, project_id: int) -> str:
    path = repos.repository_path(a.world.app.config, project_id)
    return "\n".join(sorted(str(p.relative_to(path)) + ":" + p.read_text() for p in (path / "refs").rglob("*")
                            if p.is_file()) + [(path / "packed-refs").read_text() if (path / "packed-refs").exists()
                                               else ""])


# -- CSRF: every state-changing form, each with several kinds of bad token -----------------------


@dataclasses.dataclass(frozen=True)
class StateForm:
    """A state-changing request, and how to see whether it took effect."""

    name: str
    path: Callable  # (attempt, x) -> str
    data: Callable  # (attempt, x) -> dict
    changed: Callable  # (attempt, client, x) -> bool
    actor: str = "alice"
    prepare: Callable | None = None  # (attempt, x) -> None; sets victims on x
    json: bool = False


def _web(a):
    return a.world.web


def _prep_variable(a, x):
    x.var = "V" + a.marker.upper()
    make_variable(a, a.world.web.id, x.var)


def _prep_webhook(a, x):
    x.hook = make_webhook(a, a.world.web.id)
    x.before = webhook_state(a.world, x.hook)


def _prep_schedule(a, x):
    x.schedule = make_schedule(a, a.world.web.id)


def _prep_snapshot(a, x):
    x.before = project_row(a, a.world.web.id)
    x.lib_before = project_row(a, a.world.lib.id)
    x.runs = run_count(a.world, a.world.web.id)


def _prep_job(a, x):
    x.before = job_state(a.world, a.world.web.finished_job)
    x.runs = run_count(a.world, a.world.web.id)


def _prep_delivery(a, x):
    x.deliveries = delivery_count(a.world)


def _prep_token(a, x):
    x.token, _ = make_token(a, x.username)


def _prep_merge_request(a, x):
    x.number = make_merge_request(a, a.world.web.id)


def _prep_branch(a, x):
    commit(a.world.app, a.world.web.id, {f"{a.marker}.txt": "x\n"}, branch=a.marker)


def _prep_run(a, x):
    x.run, x.run_number, _ = start_run(a.world.app, a.world.web.id)
    x.before = run_status(a.world, x.run)


def _prep_count(a, x):
    x.runs = run_count(a.world, a.world.web.id)


WEB = "/acme/web/-"
FORMS: list[StateForm] = [
    StateForm("variable_add", lambda a, x: f"{WEB}/variables",
              lambda a, x: {"name": "N" + a.marker.upper(), "value": "planted"},
              lambda a, c, x: variable_value(a.world, a.world.web.id, "N" + a.marker.upper()) is not None),
    StateForm("variable_edit", lambda a, x: f"{WEB}/variables/{x.var}/edit", lambda a, x: {"value": a.marker},
              lambda a, c, x: variable_value(a.world, a.world.web.id, x.var) == a.marker, prepare=_prep_variable),
    StateForm("variable_delete", lambda a, x: f"{WEB}/variables/{x.var}/delete", lambda a, x: {},
              lambda a, c, x: variable_value(a.world, a.world.web.id, x.var) is None, prepare=_prep_variable),
    StateForm("webhook_add", lambda a, x: f"{WEB}/settings/webhooks",
              lambda a, x: {"url": f"http://{WEBHOOK_HOST}:9/{a.marker}", "active": "y", "event_run": "y"},
              lambda a, c, x: webhook_count(a.world, a.world.web.id) != x.count,
              prepare=lambda a, x: setattr(x, "count", webhook_count(a.world, a.world.web.id))),
    StateForm("webhook_edit", lambda a, x: f"{WEB}/settings/webhooks/{x.hook}",
              lambda a, x: {"event_deployment": "y"},
              lambda a, c, x: webhook_state(a.world, x.hook) != x.before, prepare=_prep_webhook),
    StateForm("webhook_secret", lambda a, x: f"{WEB}/settings/webhooks/{x.hook}/secret", lambda a, x: {},
              lambda a, c, x: webhook_state(a.world, x.hook) != x.before, prepare=_prep_webhook),
    StateForm("webhook_delete", lambda a, x: f"{WEB}/settings/webhooks/{x.hook}/delete", lambda a, x: {},
              lambda a, c, x: webhook_state(a.world, x.hook) is None, prepare=_prep_webhook),
    StateForm("webhook_redeliver",
              lambda a, x: f"{WEB}/settings/webhooks/{a.world.web.webhook}/deliveries/{a.world.web.delivery}/redeliver",
              lambda a, x: {}, lambda a, c, x: delivery_count(a.world) != x.deliveries, prepare=_prep_delivery),
    StateForm("pipeline_settings", lambda a, x: f"{WEB}/settings/pipelines",
              lambda a, x: {"job_concurrency": "7", "cancel_superseded": "y"},
              lambda a, c, x: project_row(a, a.world.web.id) != x.before, prepare=_prep_snapshot),
    StateForm("run_start", lambda a, x: f"{WEB}/pipelines", lambda a, x: {"ref": "main"},
              lambda a, c, x: run_count(a.world, a.world.web.id) != x.runs, prepare=_prep_count),
    StateForm("run_cancel", lambda a, x: f"{WEB}/pipelines/{x.run_number}/cancel", lambda a, x: {},
              lambda a, c, x: run_status(a.world, x.run) != x.before, prepare=_prep_run),
    StateForm("job_rerun", lambda a, x: f"{WEB}/jobs/{a.world.web.finished_job}/rerun", lambda a, x: {},
              lambda a, c, x: (job_state(a.world, a.world.web.finished_job) != x.before
                               or run_count(a.world, a.world.web.id) != x.runs), prepare=_prep_job),
    StateForm("schedule_add", lambda a, x: f"{WEB}/schedules",
              lambda a, x: {"cron": "0 4 * * *", "ref": "main", "description": a.marker},
              lambda a, c, x: schedule_count(a.world, a.world.web.id) != x.count,
              prepare=lambda a, x: setattr(x, "count", schedule_count(a.world, a.world.web.id))),
    StateForm("schedule_disable", lambda a, x: f"{WEB}/schedules/{x.schedule}/disable", lambda a, x: {},
              lambda a, c, x: schedule_state(a.world, x.schedule)[2] is False, prepare=_prep_schedule),
    StateForm("schedule_delete", lambda a, x: f"{WEB}/schedules/{x.schedule}/delete", lambda a, x: {},
              lambda a, c, x: schedule_state(a.world, x.schedule) is None, prepare=_prep_schedule),
    StateForm("merge_request_new", lambda a, x: f"{WEB}/merge_requests/new",
              lambda a, x: {"source_branch": a.marker, "target_branch": "main", "title": a.marker},
              lambda a, c, x: merge_request_titled(a, a.marker), prepare=_prep_branch),
    StateForm("merge_request_close", lambda a, x: f"{WEB}/merge_requests/{x.number}/close", lambda a, x: {},
              lambda a, c, x: merge_request_state(a, a.world.web.id, x.number) != "open", prepare=_prep_merge_request),
    StateForm("protect_branch", lambda a, x: f"{WEB}/settings/repository/protected",
              lambda a, x: {"pattern": f"{a.marker}/*"},
              lambda a, c, x: project_row(a, a.world.web.id) != x.before, prepare=_prep_snapshot),
    StateForm("mirror_url", lambda a, x: "/acme/lib/-/settings/mirroring",
              lambda a, x: {"mirror_url": f"http://{WEBHOOK_HOST}:9/{a.marker}.git"},
              lambda a, c, x: project_row(a, a.world.lib.id) != x.lib_before, prepare=_prep_snapshot),
    StateForm("mirror_secret", lambda a, x: "/acme/lib/-/settings/mirroring/secret", lambda a, x: {},
              lambda a, c, x: project_row(a, a.world.lib.id) != x.lib_before, prepare=_prep_snapshot),
    StateForm("project_new", lambda a, x: "/projects/new",
              lambda a, x: {"organisation": str(a.world.acme_org_id), "name": a.marker},
              lambda a, c, x: project_exists(a.world, f"acme/{a.marker}")),
    StateForm("token_create", lambda a, x: "/user/tokens",
              lambda a, x: {"name": "planted", "scope": "read", "project": "", "expires": "",
                            "current_password": PASSWORD},
              lambda a, c, x: token_count(a.world, x.username) > 0, actor=FRESH),
    StateForm("token_revoke", lambda a, x: f"/user/tokens/{x.token}/revoke", lambda a, x: {},
              lambda a, c, x: not token_live(a.world, x.token), actor=FRESH, prepare=_prep_token),
    StateForm("password_change", lambda a, x: "/user/password",
              lambda a, x: {"current_password": PASSWORD, "new_password": f"planted {a.marker} password"},
              lambda a, c, x: password_works(a.world, x.username, f"planted {a.marker} password"), actor=FRESH),
    StateForm("logout", lambda a, x: "/logout", lambda a, x: {}, lambda a, c, x: not signed_in_as(c)),
    StateForm("api_run_start", lambda a, x: "/api/v1/projects/acme/web/runs", lambda a, x: {"ref": "main"},
              lambda a, c, x: run_count(a.world, a.world.web.id) != x.runs, prepare=_prep_count, json=True),
    StateForm("api_run_cancel", lambda a, x: f"/api/v1/runs/{x.run}/cancel", lambda a, x: {},
              lambda a, c, x: run_status(a.world, x.run) != x.before, prepare=_prep_run, json=True),
]

VALID = "valid"
# The kinds of bad token; every form is tried without one, and with two of the others.
BAD_TOKENS = ("foreign_session", "pre_login", "query_string", "htmx_bad_header", "htmx_no_token", "tampered",
              "before_relogin", "empty", "bearer_instead", "anonymous_session")


def send_form(a: Attempt, form: StateForm, variant: str):
    """Send ``form`` with the ``variant`` kind of token; (client, response, context)."""
    x = SimpleNamespace(username=a.fresh_user() if form.actor == FRESH else form.actor)
    if form.prepare:
        form.prepare(a, x)
    password = a.world.password(x.username)
    if variant == "pre_login":
        client = a.client()
        token = page_token(client, "/login")
        assert sign_in(client, x.username, password).status_code == 302
    elif variant == "before_relogin":
        client = a.signed_in(x.username, password)
        token = page_token(client)
        client.post("/logout", data={"csrf_token": token})
        assert sign_in(client, x.username, password).status_code == 302
    else:
        client = a.signed_in(x.username, password)
        token = {
            VALID: lambda: page_token(client),
            "foreign_session": lambda: page_token(a.signed_in("bob")),
            "anonymous_session": lambda: page_token(a.client(), "/login"),
            "tampered": lambda: _tampered(page_token(client)),
            "empty": lambda: "",
            "query_string": lambda: page_token(client),
        }.get(variant, lambda: None)()
    path, data, headers = form.path(a, x), form.data(a, x), {}
    if variant == "query_string":
        path += ("&" if "?" in path else "?") + f"csrf_token={token}"
        token = None
    elif variant == "htmx_bad_header":
        headers.update(HX, **{"X-CSRFToken": "ImJhZCI.bad.token"})
    elif variant == "htmx_no_token":
        headers.update(HX)
    elif variant == "bearer_instead":
        headers["Authorization"] = "Bearer " + a.world.tokens["alice-write"]
    if token is not None:
        if form.json:
            headers["X-CSRFToken"] = token
        else:
            data["csrf_token"] = token
    if form.json:
        response = client.post(path, data=json.dumps(data), content_type="application/json", headers=headers)
    else:
        response = client.post(path, data=data, headers=headers)
    return client, response, x


def _tampered(token: str) -> str:
    # The first character, not the last: a base64 string's last character carries padding
    # bits, so changing it may decode to the same signature.
    return ("J" if token[0] != "J" else "K") + token[1:]


def _csrf_case(form: StateForm, variant: str):
    def run(a: Attempt) -> None:
        client, response, x = send_form(a, form, variant)
        a.accept_if(form.changed(a, client, x), f"{form.name} took effect ({response.status_code})")
        a.accept_if(not is_refusal(response), f"answered {response.status_code}, not a refusal")

    return run


for _i, _form in enumerate(FORMS):
    for _variant in ("missing", BAD_TOKENS[_i % len(BAD_TOKENS)], BAD_TOKENS[(_i + 4) % len(BAD_TOKENS)]):
        CASES.append(Case(f"csrf-{_form.name}-{_variant}", _csrf_case(_form, _variant)))


# -- forged HX-Request: no bypass of sign-in, permissions or CSRF, no partial for strangers -------


def _leaks(a: Attempt, body: str, project) -> list[str]:
    secrets_of = [project.log_marker, "kept-value", SECRET_VALUE, f"{project.name}-hook", f"merge request of {project.path}"]
    return [s for s in secrets_of if s in body]


def _hx_get(who: str | None, path: Callable, project: str = "web", extra: dict | None = None):
    def run(a: Attempt) -> None:
        client = a.signed_in(who) if who else a.client()
        response = client.get(path(a), headers={**HX, **(extra or {})})
        body = response.get_data(as_text=True)
        a.accept_if(not is_refusal(response), f"answered {response.status_code} to a forged htmx request")
        leaked = _leaks(a, body, getattr(a.world, project))
        a.accept_if(bool(leaked), f"leaked {leaked}")
        a.accept_if(any(h in response.headers for h in ("HX-Redirect", "HX-Location", "HX-Trigger"))
                    and not is_refusal(response), "answered with htmx instructions")

    return run


for _who, _name, _path, _extra in (
    (None, "recent_runs_anonymous", lambda a: "/acme/web/-/pipelines/recent", None),
    (None, "runs_list_anonymous", lambda a: "/acme/web/-/pipelines?page=1", None),
    (None, "log_lines_anonymous", lambda a: f"/-/jobs/{a.world.web.finished_job}/log/lines?start=0", None),
    (None, "variables_anonymous", lambda a: "/acme/web/-/variables", None),
    (None, "deliveries_anonymous", lambda a: f"/acme/web/-/settings/webhooks/{a.world.web.webhook}/deliveries", None),
    (None, "tokens_anonymous", lambda a: "/user/tokens", None),
    (None, "api_run_anonymous", lambda a: f"/api/v1/runs/{a.world.web.finished_run}", None),
    (None, "job_history_restore_anonymous", lambda a: f"/acme/web/-/jobs/{a.world.web.finished_job}",
     {"HX-History-Restore-Request": "true"}),
    ("bob", "recent_runs_outsider", lambda a: "/acme/web/-/pipelines/recent", None),
    ("bob", "run_widget_outsider", lambda a: f"/acme/web/-/pipelines/{a.world.web.finished_run_number}?since=x", None),
    ("bob", "merge_request_outsider", lambda a: f"/acme/web/-/merge_requests/{a.world.web.merge_request}", None),
    ("vic", "variables_viewer", lambda a: "/acme/web/-/variables", None),
    ("vic", "webhooks_viewer", lambda a: "/acme/web/-/settings/webhooks", None),
):
    CASES.append(Case(f"htmx-{_name}", _hx_get(_who, _path, extra=_extra)))


@case("htmx-viewer_adds_variable")
def _(a: Attempt) -> None:
    client = a.signed_in("vic")
    name = "H" + a.marker.upper()
    response = client.post("/acme/web/-/variables", data={"csrf_token": page_token(client), "name": name, "value": "x"},
                           headers=HX)
    a.accept_if(variable_value(a.world, a.world.web.id, name) is not None, "a Viewer added a variable over htmx")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")


@case("htmx-anonymous_starts_run")
def _(a: Attempt) -> None:
    client = a.client()
    before = run_count(a.world, a.world.web.id)
    response = client.post("/acme/web/-/pipelines", data={"csrf_token": page_token(client, "/login"), "ref": "main"},
                           headers=HX)
    a.accept_if(run_count(a.world, a.world.web.id) != before, "an anonymous htmx request started a run")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")


@case("htmx-developer_cancels_other_org_run")
def _(a: Attempt) -> None:
    client = a.signed_in("dev")
    before = run_status(a.world, a.world.core.active_run)
    response = client.post(f"/globex/core/-/pipelines/{a.world.core.active_run_number}/cancel",
                           data={"csrf_token": page_token(client)}, headers=HX)
    a.accept_if(run_status(a.world, a.world.core.active_run) != before, "a stranger canceled a run over htmx")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")


# -- session fixation and cookie replay -------------------------------------------------------------


def _cookie(client) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else None


def _client_with_cookie(a: Attempt, value: str):
    client = a.client()
    client.set_cookie(COOKIE, value)
    return client


@case("session-planted_anonymous_cookie")
def _(a: Attempt) -> None:
    attacker = a.client()
    attacker.get("/login")
    planted = _cookie(attacker)
    victim = _client_with_cookie(a, planted)
    assert sign_in(victim, "alice", PASSWORD).status_code == 302
    a.accept_if(_cookie(victim) == planted, "the signed-in session kept the planted cookie")
    a.accept_if(signed_in_as(_client_with_cookie(a, planted)), "the planted cookie is signed in as the victim")


@case("session-login_without_csrf")
def _(a: Attempt) -> None:
    # Login CSRF: a page elsewhere submits the attacker's credentials from the victim's browser.
    victim = a.client()
    victim.get("/login")
    response = victim.post("/login", data={"username": "bob", "password": PASSWORD})
    a.accept_if(signed_in_as(victim), "a sign-in without a CSRF token signed the browser in")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")


@case("session-replay_after_logout")
def _(a: Attempt) -> None:
    client = a.signed_in("alice")
    copied = _cookie(client)
    client.post("/logout", data={"csrf_token": page_token(client)})
    a.accept_if(signed_in_as(_client_with_cookie(a, copied)), "a signed-out session cookie still signs in")


@case("session-replay_after_password_change")
def _(a: Attempt) -> None:
    username = a.fresh_user()
    stolen = _cookie(a.signed_in(username))
    owner = a.signed_in(username)
    new = f"changed {a.marker} password"
    answer = owner.post("/user/password", data={"csrf_token": page_token(owner), "current_password": PASSWORD,
                                                "new_password": new})
    assert answer.status_code == 302 and password_works(a.world, username, new)
    a.accept_if(signed_in_as(_client_with_cookie(a, stolen)), "a cookie from before the password change still signs in")


@case("session-replay_after_disable")
def _(a: Attempt) -> None:
    username = a.fresh_user()
    stolen = _cookie(a.signed_in(username))
    with a.world.app.db.session() as s:
        user = users.find_user(s, username)
        user.is_active = False
        user.disabled_at = dt.datetime.now(dt.timezone.utc)
    a.accept_if(signed_in_as(_client_with_cookie(a, stolen)), "a disabled account's session still works")


def _forged_cookie(a: Attempt, secret_key: str, payload: dict) -> str:
    fake = Flask("forger")
    fake.secret_key = secret_key
    return SecureCookieSessionInterface().get_signing_serializer(fake).dumps(payload)


def _root_payload(a: Attempt) -> dict:
    with a.world.app.db.session() as s:
        root = users.find_user(s, "root")
        return {"_user_id": root.get_id(), "_fresh": True, "_id": "x" * 128}


@case("session-forged_with_wrong_key")
def _(a: Attempt) -> None:
    cookie = _forged_cookie(a, "not the appliance's key " * 2, _root_payload(a))
    a.accept_if(signed_in_as(_client_with_cookie(a, cookie)), "a cookie signed with another key signed in as root")


@case("session-guessed_user_id")
def _(a: Attempt) -> None:
    # A correctly signed session (from an anonymous visit) whose body is rewritten to name root.
    client = a.client()
    client.get("/login")
    timestamp, signature = _cookie(client).rsplit(".", 2)[1:]
    payload = base64.urlsafe_b64encode(json.dumps(_root_payload(a)).encode()).decode().rstrip("=")
    forged = f"{payload}.{timestamp}.{signature}"
    a.accept_if(signed_in_as(_client_with_cookie(a, forged)), "a rewritten session body signed in")


@case("session-remember_cookie_forged")
def _(a: Attempt) -> None:
    client = a.client()
    client.set_cookie("remember_token", "1|" + "0" * 128)
    a.accept_if(signed_in_as(client), "a forged remember-me cookie signed in")


# -- IDOR: alice (Maintainer in acme) reaches for globex/core's objects ------------------------------


def _idor_get(path: Callable, *, auth: Callable | None = None, stream: bool = False):
    def run(a: Attempt) -> None:
        client = a.signed_in("alice")
        headers = auth(a) if auth else {}
        response = client.get(path(a), headers=headers, buffered=not stream)
        body = "" if stream else response.get_data(as_text=True)
        response.close()
        a.accept_if(not is_refusal(response), f"answered {response.status_code}")
        leaked = _leaks(a, body, a.world.core)
        a.accept_if(bool(leaked), f"leaked {leaked}")

    return run


CORE = "/globex/core/-"
for _name, _path, _kw in (
    ("job_page_swapped", lambda a: f"{WEB}/jobs/{a.world.core.finished_job}", {}),
    ("job_page", lambda a: f"{CORE}/jobs/{a.world.core.finished_job}", {}),
    ("log_lines", lambda a: f"/-/jobs/{a.world.core.finished_job}/log/lines?start=0", {}),
    ("log_download", lambda a: f"/-/jobs/{a.world.core.finished_job}/log.txt", {}),
    ("log_stream", lambda a: f"/-/jobs/{a.world.core.finished_job}/log/stream", {"stream": True}),
    ("artifact_swapped", lambda a: f"{WEB}/jobs/{a.world.core.finished_job}/artifacts/app", {}),
    ("artifact", lambda a: f"{CORE}/jobs/{a.world.core.finished_job}/artifacts/app", {}),
    ("run_page", lambda a: f"{CORE}/pipelines/{a.world.core.finished_run_number}", {}),
    ("variables_page", lambda a: f"{CORE}/variables", {}),
    ("secret_edit_page", lambda a: f"{CORE}/variables/SECRET/edit", {}),
    ("webhook_page_swapped", lambda a: f"{WEB}/settings/webhooks/{a.world.core.webhook}", {}),
    ("deliveries_swapped", lambda a: f"{WEB}/settings/webhooks/{a.world.core.webhook}/deliveries", {}),
    ("merge_request", lambda a: f"{CORE}/merge_requests/{a.world.core.merge_request}", {}),
    ("raw_file", lambda a: f"{CORE}/raw/main/.prts/pipeline.yaml", {}),
    ("schedules_page", lambda a: f"{CORE}/schedules", {}),
    ("api_run", lambda a: f"/api/v1/runs/{a.world.core.finished_run}", {}),
    ("api_runs_list", lambda a: "/api/v1/projects/globex/core/runs", {}),
    ("git_clone_with_password", lambda a: "/globex/core.git/info/refs?service=git-upload-pack",
     {"auth": lambda a: basic("alice", PASSWORD)}),
):
    CASES.append(Case(f"idor-{_name}", _idor_get(_path, **_kw)))


def _idor_post(path: Callable, state: Callable, *, json_body: dict | None = None):
    def run(a: Attempt) -> None:
        client = a.signed_in("alice")
        before = state(a)
        token = page_token(client)
        if json_body is None:
            response = client.post(path(a), data={"csrf_token": token})
        else:
            response = client.post(path(a), data=json.dumps(json_body), content_type="application/json",
                                   headers={"X-CSRFToken": token})
        a.accept_if(state(a) != before, f"changed another organisation's object ({response.status_code})")
        a.accept_if(not is_refusal(response), f"answered {response.status_code}")

    return run


for _name, _path, _state, _json in (
    ("cancel_job_swapped", lambda a: f"{WEB}/jobs/{a.world.core.active_job}/cancel",
     lambda a: job_state(a.world, a.world.core.active_job), None),
    ("rerun_job_swapped", lambda a: f"{WEB}/jobs/{a.world.core.finished_job}/rerun",
     lambda a: (job_state(a.world, a.world.core.finished_job), run_count(a.world, a.world.core.id)), None),
    ("cancel_run", lambda a: f"{CORE}/pipelines/{a.world.core.active_run_number}/cancel",
     lambda a: run_status(a.world, a.world.core.active_run), None),
    ("start_run", lambda a: f"{CORE}/pipelines", lambda a: run_count(a.world, a.world.core.id), None),
    ("webhook_delete_swapped", lambda a: f"{WEB}/settings/webhooks/{a.world.core.doomed_webhook}/delete",
     lambda a: webhook_state(a.world, a.world.core.doomed_webhook), None),
    ("webhook_update_swapped", lambda a: f"{WEB}/settings/webhooks/{a.world.core.webhook}",
     lambda a: webhook_state(a.world, a.world.core.webhook), None),
    ("webhook_secret_swapped", lambda a: f"{WEB}/settings/webhooks/{a.world.core.webhook}/secret",
     lambda a: webhook_state(a.world, a.world.core.webhook), None),
    ("redeliver_swapped_delivery",
     lambda a: f"{WEB}/settings/webhooks/{a.world.web.webhook}/deliveries/{a.world.core.delivery}/redeliver",
     lambda a: delivery_count(a.world), None),
    ("schedule_delete_swapped", lambda a: f"{WEB}/schedules/{a.world.core.schedule}/delete",
     lambda a: schedule_state(a.world, a.world.core.schedule), None),
    ("schedule_disable_swapped", lambda a: f"{WEB}/schedules/{a.world.core.schedule}/disable",
     lambda a: schedule_state(a.world, a.world.core.schedule), None),
    ("variable_delete", lambda a: f"{CORE}/variables/TARGET/delete",
     lambda a: variable_value(a.world, a.world.core.id, "TARGET"), None),
    ("merge_request_close", lambda a: f"{CORE}/merge_requests/{a.world.core.merge_request}/close",
     lambda a: merge_request_state(a, a.world.core.id, a.world.core.merge_request), None),
    ("revoke_other_users_token", lambda a: f"/user/tokens/{a.world.token_ids['bob-read']}/revoke",
     lambda a: token_live(a.world, a.world.token_ids["bob-read"]), None),
    ("api_cancel_run", lambda a: f"/api/v1/runs/{a.world.core.active_run}/cancel",
     lambda a: run_status(a.world, a.world.core.active_run), {}),
    ("api_start_run", lambda a: "/api/v1/projects/globex/core/runs", lambda a: run_count(a.world, a.world.core.id),
     {"ref": "main"}),
):
    CASES.append(Case(f"idor-{_name}", _idor_post(_path, _state, json_body=_json)))


@case("idor-variable_edit")
def _(a: Attempt) -> None:
    client = a.signed_in("alice")
    response = client.post(f"{CORE}/variables/TARGET/edit", data={"csrf_token": page_token(client), "value": a.marker})
    a.accept_if(variable_value(a.world, a.world.core.id, "TARGET") != "kept-value", "changed globex's variable")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")


# -- token scope escalation ---------------------------------------------------------------------------


def _git(a: Attempt, method: str, path: str, username: str, secret: str):
    client = a.client()
    if method == "GET":
        return client.get(path, headers=basic(username, secret))
    return client.post(path, data=b"0000", content_type="application/x-git-receive-pack-request",
                       headers=basic(username, secret))


def _git_case(method: str, path: str, token: Callable, username: str = "alice", project: str = "web"):
    def run(a: Attempt) -> None:
        project_id = getattr(a.world, project).id
        before = refs(a, project_id)
        response = _git(a, method, path, username, token(a))
        a.accept_if(refs(a, project_id) != before, "the repository's refs changed")
        a.accept_if(not is_refusal(response), f"answered {response.status_code}")

    return run


for _name, _method, _path, _token, _user, _project in (
    ("read_token_pushes", "POST", "/acme/web.git/git-receive-pack", lambda a: a.world.tokens["alice-read"], "alice",
     "web"),
    ("read_token_asks_to_push", "GET", "/acme/web.git/info/refs?service=git-receive-pack",
     lambda a: a.world.tokens["alice-read"], "alice", "web"),
    ("project_token_reads_other_project", "GET", "/acme/lib.git/info/refs?service=git-upload-pack",
     lambda a: a.world.tokens["alice-write-web"], "alice", "lib"),
    ("project_token_pushes_other_project", "POST", "/acme/lib.git/git-receive-pack",
     lambda a: a.world.tokens["alice-write-web"], "alice", "lib"),
    ("token_with_another_username", "GET", "/acme/web.git/info/refs?service=git-upload-pack",
     lambda a: a.world.tokens["alice-read"], "bob", "web"),
    ("bobs_token_on_acme", "GET", "/acme/web.git/info/refs?service=git-upload-pack",
     lambda a: a.world.tokens["bob-read"], "bob", "web"),
    ("revoked_token", "GET", "/acme/web.git/info/refs?service=git-upload-pack",
     lambda a: _revoked_token(a), "alice", "web"),
    ("expired_token", "GET", "/acme/web.git/info/refs?service=git-upload-pack",
     lambda a: _expired_token(a), "alice", "web"),
    ("truncated_token", "GET", "/acme/web.git/info/refs?service=git-upload-pack",
     lambda a: a.world.tokens["alice-read"][:-1], "alice", "web"),
):
    CASES.append(Case(f"token-{_name}", _git_case(_method, _path, _token, _user, _project)))


def _revoked_token(a: Attempt) -> str:
    token_id, text = make_token(a, "alice")
    with a.world.app.db.session() as s:
        tokens.revoke(s, users.find_user(s, "alice"), token_id)
    return text


def _expired_token(a: Attempt) -> str:
    token_id, text = make_token(a, "alice", expires_in_days=1)
    with a.world.app.db.session() as s:
        s.get(ApiToken, token_id).expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    return text


@case("token-as_session_cookie")
def _(a: Attempt) -> None:
    a.accept_if(signed_in_as(_client_with_cookie(a, a.world.tokens["alice-write"])), "an API token worked as a cookie")


@case("token-as_login_password")
def _(a: Attempt) -> None:
    client = a.client()
    response = sign_in(client, "alice", a.world.tokens["alice-write"])
    a.accept_if(signed_in_as(client), "an API token signed in through the login form")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")


for _param in ("access_token", "private_token", "token"):
    def _query_token(a: Attempt, param=_param) -> None:
        client = a.client()
        response = client.get(f"/api/v1/runs/{a.world.web.finished_run}?{param}={a.world.tokens['alice-write']}")
        a.accept_if(not is_refusal(response), f"a token in ?{param}= answered {response.status_code}")

    CASES.append(Case(f"token-in_query_{_param}", _query_token))


@case("token-bearer_on_web_page")
def _(a: Attempt) -> None:
    response = a.client().get("/acme/web/-/variables", headers={"Authorization": "Bearer " + a.world.tokens["alice-write"]})
    a.accept_if(not is_refusal(response), f"a bearer token opened a web page ({response.status_code})")


@case("token-bearer_read_starts_run")
def _(a: Attempt) -> None:
    before = run_count(a.world, a.world.web.id)
    response = a.client().post("/api/v1/projects/acme/web/runs", json={"ref": "main"},
                               headers={"Authorization": "Bearer " + a.world.tokens["alice-read"]})
    a.accept_if(run_count(a.world, a.world.web.id) != before, "a read token started a run")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")


@case("token-bearer_project_token_lists_other_project")
def _(a: Attempt) -> None:
    response = a.client().get("/api/v1/projects/acme/lib/runs",
                              headers={"Authorization": "Bearer " + a.world.tokens["alice-write-web"]})
    a.accept_if(not is_refusal(response), f"a token bound to acme/web read acme/lib ({response.status_code})")
    a.accept_if(a.world.lib.log_marker in response.get_data(as_text=True), "leaked acme/lib")


def _token_form_case(fields: dict, field_label: str):
    def run(a: Attempt) -> None:
        username = a.fresh_user()
        with a.world.app.db.session() as s:  # a member of acme/web, so a project restriction could be valid
            organisations.grant(s, users.find_user(s, username), s.get(Project, a.world.web.id), Role.DEVELOPER)
        client = a.signed_in(username)
        data = {"name": "escalated", "scope": "read", "project": "", "expires": "", "current_password": PASSWORD,
                "csrf_token": page_token(client)} | fields
        response = client.post("/user/tokens", data=data)
        a.accept_if(token_count(a.world, username) > 0, f"made a token with {fields}")
        a.accept_if(not is_refusal(response), f"answered {response.status_code}")
        if is_refusal(response) and field_label not in response.get_data(as_text=True):
            a.unclear(f"the refusal does not name {field_label!r}")

    return run


for _name, _fields, _label in (
    ("admin_scope_by_non_admin", {"scope": "admin"}, "administrators"),
    ("unknown_scope", {"scope": "root"}, "Scope"),
    ("project_of_other_org", {"project": "globex/core"}, "project you can see"),
    ("expiry_beyond_limit", {"expires": "100000"}, "Expires after"),
):
    CASES.append(Case(f"token-form_{_name}", _token_form_case(_fields, _label)))


# -- open redirects through next= ---------------------------------------------------------------------

NEXT_VALUES = {
    "scheme_relative": "//evil.example",
    "absolute": "https://evil.example",
    "backslash": "/\\evil.example",
    "double_backslash": "\\\\evil.example",
    "javascript": "javascript:alert(1)",
    "encoded_slashes": "%2F%2Fevil.example",
    "nested_login": "/login?next=https:evil.example",
    "scheme_no_slashes": "https:evil.example",
    "leading_tab": "\t//evil.example",
    "tab_inside": "/\t/evil.example",
    "newline_inside": "/\n/evil.example",
    "triple_slash": "///evil.example",
    "leading_space": " //evil.example",
    "data_url": "data:text/html,<script>alert(1)</script>",
    "userinfo": "https://localhost@evil.example",
}


def _follow(client, response, hops: int = 3) -> list[str]:
    """The Location (and HX-Redirect) targets of a redirect chain, following those that
    stay on the site."""
    targets = []
    for _ in range(hops):
        found = [response.headers.get(h) for h in ("Location", "HX-Redirect", "HX-Location") if response.headers.get(h)]
        if not found:
            break
        targets.extend(found)
        if any(leaves_the_site(t) for t in found):
            break
        response = client.get(found[0])
    return targets


def _redirect_case(value: str, *, htmx: bool = False, signed_in_first: bool = False):
    def run(a: Attempt) -> None:
        client = a.signed_in("alice") if signed_in_first else a.client()
        if signed_in_first:
            response = client.get("/login?next=" + quote(value, safe=""))
        else:
            response = sign_in(client, "alice", PASSWORD, next_url=value, headers=HX if htmx else None)
        for target in _follow(client, response):
            a.accept_if(leaves_the_site(target), f"redirected to {target!r}")

    return run


for _name, _value in NEXT_VALUES.items():
    CASES.append(Case(f"redirect-login_{_name}", _redirect_case(_value)))
CASES.append(Case("redirect-login_htmx_scheme_relative", _redirect_case("//evil.example", htmx=True)))
CASES.append(Case("redirect-already_signed_in_absolute", _redirect_case("https://evil.example", signed_in_first=True)))


# -- oversized fields and bodies -------------------------------------------------------------------------

MB = 1024 * 1024


def _oversized(path: Callable, fields: Callable, stored: Callable, label: str | None, *, actor: str = "alice",
               json_body: bool = False):
    """POST an oversized field with a valid token: refused with a 4xx naming ``label`` (or
    413), and ``stored(attempt, x)`` false afterwards."""

    def run(a: Attempt) -> None:
        x = SimpleNamespace(username=a.fresh_user() if actor == FRESH else actor, before=project_row(a, a.world.web.id),
                            runs=run_count(a.world, a.world.web.id), hooks=webhook_count(a.world, a.world.web.id),
                            schedules=schedule_count(a.world, a.world.web.id))
        client = a.signed_in(x.username)
        token = page_token(client)
        if json_body:
            body = fields(a)
            response = client.post(path(a), data=body if isinstance(body, str) else json.dumps(body),
                                   content_type="application/json", headers={"X-CSRFToken": token})
        else:
            response = client.post(path(a), data={"csrf_token": token, **fields(a)})
        a.accept_if(stored(a, x), f"the oversized input was stored ({response.status_code})")
        a.accept_if(not is_refusal(response), f"answered {response.status_code}")
        if label and is_refusal(response) and response.status_code != 413 \
                and label not in response.get_data(as_text=True):
            a.unclear(f"{response.status_code} without naming {label!r}")

    return run


for _name, _path, _fields, _stored, _label, _kw in (
    ("variable_value_10MB", lambda a: f"{WEB}/variables",
     lambda a: {"name": "B" + a.marker.upper(), "value": "v" * (10 * MB)},
     lambda a, x: variable_value(a.world, a.world.web.id, "B" + a.marker.upper()) is not None, "Value", {}),
    ("variable_name_100kB", lambda a: f"{WEB}/variables", lambda a: {"name": "N" * 100_000, "value": "v"},
     lambda a, x: variable_value(a.world, a.world.web.id, "N" * 100_000) is not None, "Name", {}),
    ("form_body_over_16MB", lambda a: f"{WEB}/variables",
     lambda a: {"name": "G" + a.marker.upper(), "value": "v" * (17 * MB)},
     lambda a, x: variable_value(a.world, a.world.web.id, "G" + a.marker.upper()) is not None, None, {}),
    ("webhook_url_1MB", lambda a: f"{WEB}/settings/webhooks",
     lambda a: {"url": f"http://{WEBHOOK_HOST}:9/" + "u" * MB, "event_run": "y", "active": "y"},
     lambda a, x: webhook_count(a.world, a.world.web.id) != x.hooks, "Payload URL", {}),
    ("mirror_url_1MB", lambda a: "/acme/lib/-/settings/mirroring",
     lambda a: {"mirror_url": f"http://{WEBHOOK_HOST}:9/" + "u" * MB},
     lambda a, x: bool(project_row(a, a.world.lib.id)[3]) and len(project_row(a, a.world.lib.id)[3]) > 2000,
     "Mirror URL", {}),
    ("run_ref_1MB", lambda a: f"{WEB}/pipelines", lambda a: {"ref": "r" * MB},
     lambda a, x: run_count(a.world, a.world.web.id) != x.runs, "Branch, tag or commit", {}),
    ("schedule_description_1MB", lambda a: f"{WEB}/schedules",
     lambda a: {"cron": "0 4 * * *", "ref": "main", "description": "d" * MB},
     lambda a, x: schedule_count(a.world, a.world.web.id) != x.schedules, "Description", {}),
    ("schedule_cron_1MB", lambda a: f"{WEB}/schedules", lambda a: {"cron": "*" * MB, "ref": "main"},
     lambda a, x: schedule_count(a.world, a.world.web.id) != x.schedules, "Cron", {}),
    ("merge_request_title_1MB", lambda a: f"{WEB}/merge_requests/new",
     lambda a: {"source_branch": "main", "target_branch": "feature", "title": a.marker + "t" * MB},
     lambda a, x: merge_request_titled(a, a.marker + "t" * MB), "Title", {}),
    ("protect_pattern_1MB", lambda a: f"{WEB}/settings/repository/protected", lambda a: {"pattern": "p" * MB},
     lambda a, x: project_row(a, a.world.web.id) != x.before, "Branch or pattern", {}),
    ("project_description_1MB", lambda a: "/projects/new",
     lambda a: {"organisation": str(a.world.acme_org_id), "name": a.marker, "description": "d" * MB},
     lambda a, x: project_exists(a.world, f"acme/{a.marker}"), "Description", {}),
    ("project_name_100kB", lambda a: "/projects/new",
     lambda a: {"organisation": str(a.world.acme_org_id), "name": "n" * 100_000},
     lambda a, x: project_exists(a.world, "acme/" + "n" * 100_000), "Project name", {}),
    ("token_name_1MB", lambda a: "/user/tokens",
     lambda a: {"name": "n" * MB, "scope": "read", "current_password": PASSWORD},
     lambda a, x: token_count(a.world, x.username) > 0, "Name", {"actor": FRESH}),
    ("new_password_1MB", lambda a: "/user/password",
     lambda a: {"current_password": PASSWORD, "new_password": "Pw1-" + "x" * MB},
     lambda a, x: not password_works(a.world, x.username, PASSWORD), "New password", {"actor": FRESH}),
    ("api_ref_1MB", lambda a: "/api/v1/projects/acme/web/runs", lambda a: {"ref": "r" * MB},
     lambda a, x: run_count(a.world, a.world.web.id) != x.runs, "ref", {"json_body": True}),
    ("api_body_over_16MB", lambda a: "/api/v1/projects/acme/web/runs", lambda a: {"ref": "main", "pad": "p" * (17 * MB)},
     lambda a, x: run_count(a.world, a.world.web.id) != x.runs, None, {"json_body": True}),
    ("api_deeply_nested_json", lambda a: "/api/v1/projects/acme/web/runs",
     lambda a: '{"ref": ' + "[" * 100_000 + "]" * 100_000 + "}",
     lambda a, x: run_count(a.world, a.world.web.id) != x.runs, None, {"json_body": True}),
):
    CASES.append(Case(f"oversized-{_name}", _oversized(_path, _fields, _stored, _label, **_kw)))


@case("oversized-login_username_100kB")
def _(a: Attempt) -> None:
    client = a.client()
    response = sign_in(client, "a" * 100_000, PASSWORD)
    a.accept_if(signed_in_as(client), "signed in")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")


@case("oversized-login_password_1MB")
def _(a: Attempt) -> None:
    client = a.client()
    response = sign_in(client, "alice", "p" * MB)
    a.accept_if(signed_in_as(client), "signed in")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")


@case("oversized-editor_source_over_cap")
def _(a: Attempt) -> None:
    from appliance.pipelines import dsl

    client = a.signed_in("alice")
    source = "version: \"1.0\"\n# " + "x" * (dsl.MAX_BYTES + 10) + "\n"
    response = client.post("/-/pipeline-editor/validate", data={"csrf_token": page_token(client), "source": source},
                           headers=HX)
    body = response.get_data(as_text=True)
    # The editor checks a file and keeps nothing: refusing means saying the file is too large.
    a.accept_if(response.status_code < 400 and "limit is" not in body, f"answered {response.status_code} without "
                                                                       "saying the file is over the limit")


# -- the run and the tally ------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused(world, hostile: Case):
    attempt = Attempt(world, hostile.id)
    hostile.run(attempt)
    verdict = attempt.verdict()
    RESULTS.append(verdict)
    assert verdict.outcome == REFUSED, f"{hostile.id}: {verdict.outcome}: {'; '.join(verdict.reasons)}"


@pytest.mark.parametrize("form", FORMS, ids=[f.name for f in FORMS])
def test_zz_control_a_valid_token_takes_effect(world, form: StateForm):
    """The CSRF table's state checks can see a change: with a valid token each request works."""
    attempt = Attempt(world, f"control-{form.name}")
    client, response, x = send_form(attempt, form, VALID)
    assert response.status_code < 400, response.get_data(as_text=True)[:2000]
    assert form.changed(attempt, client, x), f"{form.name}: a valid request changed nothing the check can see"


def test_zzz_report(capsys):
    """Prints the tally of every hostile input this run tried; none may have got through."""
    by_outcome = {o: [v for v in RESULTS if v.outcome == o] for o in (REFUSED, ACCEPTED, SERVER_ERROR, UNCLEAR)}
    surfaces = sorted({v.case.split("-", 1)[0] for v in RESULTS})
    lines = [f"hostile inputs: {len(RESULTS)} tried, {len(by_outcome[ACCEPTED])} accepted, "
             f"{len(by_outcome[SERVER_ERROR])} server errors, {len(by_outcome[UNCLEAR])} unclear refusals "
             f"(of {len(CASES)} defined, surfaces: {', '.join(surfaces)})"]
    for outcome in (ACCEPTED, SERVER_ERROR, UNCLEAR):
        lines += [f"  {outcome}: {v.case}: {'; '.join(v.reasons)}" for v in by_outcome[outcome]]
    with capsys.disabled():  # the tally is the point of the run: print it even when output is captured
        print("\n" + "\n".join(lines))
    assert len(CASES) >= 60
    assert not by_outcome[ACCEPTED] and not by_outcome[SERVER_ERROR], "\n".join(lines)
