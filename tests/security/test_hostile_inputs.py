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
from urllib.parse import quote, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from appliance import repos
from appliance.accounts import organisations, tokens, users
from appliance.hosting import merge_requests, outbound, protection
from appliance.models import ApiToken, MergeRequest, Project, Role, User
from appliance.pipelines import schedules, variables
from appliance.pipelines.secrets import SecretBox
from hostile_kit import (
    ACCEPTED, LDAP_PASSWORD, PASSWORD, REFUSED, SECRET_VALUE, SERVER_ERROR, UNCLEAR, WEBHOOK_HOST, Attempt,
    TrackingClient, Verdict, basic, build_world, delivery_count, is_refusal, job_state, ldap_directory,
    leaves_the_site, page_token, password_works, project_exists, run_count, run_status, schedule_count,
    schedule_state, sign_in, signed_in_as, start_run, token_count, token_live, variable_value, webhook_count,
    webhook_state,
)
from oidc_peer import ProviderPeer
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
def world(tmp_path_factory, ldap_server):
    from webapp import create_app

    def flask_factory(app):
        flask = create_app(app.config)
        flask.extensions["prts"] = app  # one database for the world and the app
        flask.test_client_class = TrackingClient
        return flask

    with ProviderPeer() as peer:  # a test peer, not a real provider (tests/oidc_peer.py)
        peer.oidc_user = {"sub": "olga-subject", "preferred_username": "olga", "email": "olga@example.test",
                          "email_verified": True, "name": "Olga"}
        built = build_world(tmp_path_factory.mktemp("hostile") / "data", flask_factory, **ldap_directory(ldap_server),
                            auth__oidc__issuer=peer.url, auth__oidc__client_id=peer.client_id,
                            auth__oidc__client_secret=peer.client_secret, auth__oidc__name="Peer")
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
    method: str = "POST"


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

def _prep_victim(a, x):
    x.victim = "v" + a.marker
    with a.world.app.db.session() as s:
        users.create_user(s, x.victim, PASSWORD)


def _prep_signed_in_victim(a, x):
    _prep_victim(a, x)
    x.victim_client = a.signed_in(x.victim)


def _prep_second_session(a, x):
    x.other_client = a.signed_in(x.username)


def _prep_api_token(a, x):
    x.token, _ = make_token(a, x.username)


def user_row(a: Attempt, username: str) -> tuple | None:
    with a.world.app.db.session() as s:
        user = users.find_user(s, username)
        return None if user is None else (user.is_active, user.is_admin)


def grants_of(a: Attempt, username: str) -> int:
    from appliance.models import Membership

    with a.world.app.db.session() as s:
        user = users.find_user(s, username)
        return s.scalar(sa.select(sa.func.count()).select_from(Membership).where(Membership.user_id == user.id))


FORMS += [
    StateForm("admin_invite", lambda a, x: "/admin/users", lambda a, x: {"username": "i" + a.marker, "email": f"{a.marker}@example.test"},
              lambda a, c, x: user_row(a, "i" + a.marker) is not None, actor="root"),
    StateForm("admin_disable_user", lambda a, x: f"/admin/users/{x.victim}/disable", lambda a, x: {},
              lambda a, c, x: user_row(a, x.victim)[0] is False, actor="root", prepare=_prep_victim),
    StateForm("admin_make_admin", lambda a, x: f"/admin/users/{x.victim}/make-admin", lambda a, x: {},
              lambda a, c, x: user_row(a, x.victim)[1] is True, actor="root", prepare=_prep_victim),
    StateForm("admin_force_logout", lambda a, x: f"/admin/users/{x.victim}/logout", lambda a, x: {},
              lambda a, c, x: not signed_in_as(x.victim_client), actor="root", prepare=_prep_signed_in_victim),
    StateForm("admin_add_organisation", lambda a, x: "/admin/organisations", lambda a, x: {"name": "o" + a.marker},
              lambda a, c, x: organisation_exists(a, "o" + a.marker), actor="root"),
    StateForm("admin_add_grant", lambda a, x: "/admin/organisations/acme/grants",
              lambda a, x: {"principal_kind": "user", "principal": x.victim, "scope": "organisation", "role": "viewer"},
              lambda a, c, x: grants_of(a, x.victim) > 0, actor="root", prepare=_prep_victim),
    StateForm("members_add", lambda a, x: f"{WEB}/settings/members",
              lambda a, x: {"principal_kind": "user", "principal": x.victim, "scope": "project", "role": "viewer"},
              lambda a, c, x: grants_of(a, x.victim) > 0, prepare=_prep_victim),
    StateForm("sessions_revoke_others", lambda a, x: "/user/sessions/revoke-others", lambda a, x: {},
              lambda a, c, x: not signed_in_as(x.other_client), actor=FRESH, prepare=_prep_second_session),
    StateForm("api_token_create", lambda a, x: "/api/v1/user/tokens", lambda a, x: {"name": "planted", "scope": "read"},
              lambda a, c, x: token_count(a.world, x.username) > 0, actor=FRESH, json=True),
    StateForm("api_token_revoke", lambda a, x: f"/api/v1/user/tokens/{x.token}", lambda a, x: {},
              lambda a, c, x: not token_live(a.world, x.token), actor=FRESH, prepare=_prep_api_token, json=True,
              method="DELETE"),
]


def organisation_exists(a: Attempt, name: str) -> bool:
    with a.world.app.db.session() as s:
        return organisations.find_organisation(s, name) is not None


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
        response = client.open(path, method=form.method, data=json.dumps(data), content_type="application/json",
                               headers=headers)
    else:
        response = client.open(path, method=form.method, data=data, headers=headers)
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


def _idor_get(path: Callable, *, auth: Callable | None = None, stream: bool = False, who: str = "alice",
              project: str = "core"):
    """``who`` GETs ``path``: refused, and nothing of ``project`` in the answer."""

    def run(a: Attempt) -> None:
        client = a.signed_in(who)
        headers = auth(a) if auth else {}
        response = client.get(path(a), headers=headers, buffered=not stream)
        body = "" if stream else response.get_data(as_text=True)
        response.close()
        a.accept_if(not is_refusal(response), f"answered {response.status_code}")
        leaked = _leaks(a, body, getattr(a.world, project))
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
            assert response.status_code == 302, "the sign-in itself must succeed, or the case proves nothing"
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


# -- admin pages and the Members tab: no way up for those below ---------------------------------------


def _admin_post(actor: str, path: Callable, data: Callable, state: Callable, *, prepare=_prep_victim):
    def run(a: Attempt) -> None:
        x = SimpleNamespace(username=actor)
        prepare(a, x)
        client = a.signed_in(actor)
        before = state(a, x)
        response = client.post(path(a, x), data={"csrf_token": page_token(client), **data(a, x)})
        a.accept_if(state(a, x) != before, f"took effect ({response.status_code})")
        a.accept_if(not is_refusal(response), f"answered {response.status_code}")

    return run


def _bob_grants(a: Attempt, x) -> int:
    return grants_of(a, "bob")


def _bobs_grant_id(a: Attempt) -> int:
    from appliance.models import Membership

    with a.world.app.db.session() as s:
        bob = users.find_user(s, "bob")
        return s.scalar(sa.select(Membership.id).where(Membership.user_id == bob.id))


for _name, _actor, _path, _data, _state in (
    ("maintainer_makes_admin", "alice", lambda a, x: f"/admin/users/{x.victim}/make-admin", lambda a, x: {},
     lambda a, x: user_row(a, x.victim)),
    ("maintainer_makes_self_admin", "alice", lambda a, x: "/admin/users/alice/make-admin", lambda a, x: {},
     lambda a, x: user_row(a, "alice")),
    ("maintainer_disables_admin", "alice", lambda a, x: "/admin/users/root/disable", lambda a, x: {},
     lambda a, x: user_row(a, "root")),
    ("maintainer_invites", "alice", lambda a, x: "/admin/users", lambda a, x: {"username": "i" + a.marker, "email": f"{a.marker}@example.test"},
     lambda a, x: user_row(a, "i" + a.marker)),
    ("maintainer_grants_in_other_org", "alice", lambda a, x: "/admin/organisations/globex/grants",
     lambda a, x: {"principal_kind": "user", "principal": "alice", "scope": "organisation", "role": "admin"},
     lambda a, x: grants_of(a, "alice")),
    ("members_above_own_role", "alice", lambda a, x: f"{WEB}/settings/members",
     lambda a, x: {"principal_kind": "user", "principal": x.victim, "scope": "project", "role": "admin"},
     lambda a, x: grants_of(a, x.victim)),
    ("members_by_developer", "dev", lambda a, x: f"{WEB}/settings/members",
     lambda a, x: {"principal_kind": "user", "principal": "dev", "scope": "project", "role": "maintainer"},
     lambda a, x: grants_of(a, "dev")),
    ("members_remove_other_org_grant", "alice", lambda a, x: f"{WEB}/settings/members/{_bobs_grant_id(a)}/remove",
     lambda a, x: {}, _bob_grants),
    ("members_change_other_org_grant", "alice", lambda a, x: f"{WEB}/settings/members/{_bobs_grant_id(a)}",
     lambda a, x: {"role": "viewer"}, lambda a, x: _role_of_bob(a)),
):
    CASES.append(Case(f"admin-{_name}", _admin_post(_actor, _path, _data, _state)))


def _role_of_bob(a: Attempt):
    from appliance.models import Membership

    with a.world.app.db.session() as s:
        return s.scalar(sa.select(Membership.role).where(Membership.id == _bobs_grant_id(a)))


for _who, _name, _path in (
    ("alice", "admin_users_page_by_maintainer", lambda a: "/admin/users"),
    ("alice", "audit_page_by_maintainer", lambda a: "/audit"),
    ("alice", "audit_export_by_maintainer", lambda a: "/audit/export.csv"),
    ("alice", "other_org_project_audit", lambda a: f"{CORE}/audit"),
    ("alice", "other_org_project_audit_export", lambda a: f"{CORE}/audit/export.csv"),
    ("vic", "project_audit_by_viewer", lambda a: f"{WEB}/audit"),
    ("bob", "other_org_members_page", lambda a: f"{WEB}/settings/members"),
):
    CASES.append(Case(f"admin-{_name}", _idor_get(_path, who=_who, project="core" if _who == "alice" else "web")))


# -- the signed-in user's sessions ------------------------------------------------------------------------


@case("session-revoke_other_users_session")
def _(a: Attempt) -> None:
    from appliance.accounts import sessions
    from appliance.models import UserSession

    victim = a.signed_in("bob")
    with a.world.app.db.session() as s:
        bob = users.find_user(s, "bob")
        handles = [sessions.handle(row) for row in s.scalars(sa.select(UserSession).where(
            UserSession.user_id == bob.id, UserSession.revoked_at.is_(None)))]
    client = a.signed_in("alice")
    token = page_token(client)
    answers = [client.post(f"/user/sessions/{h}/revoke", data={"csrf_token": token}) for h in handles]
    a.accept_if(not signed_in_as(victim), "signed another user's session out")
    a.accept_if(any(not is_refusal(r) for r in answers), f"answered {[r.status_code for r in answers]}")


@case("session-revoke_with_raw_session_id")
def _(a: Attempt) -> None:
    from appliance.models import UserSession

    victim = a.signed_in("bob")
    with a.world.app.db.session() as s:
        bob = users.find_user(s, "bob")
        ids = list(s.scalars(sa.select(UserSession.id).where(UserSession.user_id == bob.id)))
    client = a.signed_in("alice")
    token = page_token(client)
    answers = [client.post(f"/user/sessions/{i}/revoke", data={"csrf_token": token}) for i in ids]
    a.accept_if(not signed_in_as(victim), "signed another user's session out by its id")
    a.accept_if(any(not is_refusal(r) for r in answers), f"answered {[r.status_code for r in answers]}")


# -- API v1 with bearer tokens: scope, project restriction, other people's objects --------------------------


def _bearer(a: Attempt, label: str) -> dict:
    return {"Authorization": "Bearer " + a.world.tokens[label]}


def _api_mint(label: str, body: Callable, *, wider: Callable):
    """A token asks POST /api/v1/user/tokens for a token; ``wider(row)`` says a new one exceeds it."""

    def run(a: Attempt) -> None:
        with a.world.app.db.session() as s:
            alice = users.find_user(s, "alice")
            before = set(s.scalars(sa.select(ApiToken.id).where(ApiToken.user_id == alice.id)))
        response = a.client().post("/api/v1/user/tokens", json=body(a), headers=_bearer(a, label))
        with a.world.app.db.session() as s:
            made = list(s.scalars(sa.select(ApiToken).where(ApiToken.user_id == alice.id, ApiToken.id.not_in(before))))
            too_wide = [row.scope + (f"@{row.project_id}" if row.project_id else "@any") for row in made if wider(a, row)]
        a.accept_if(bool(too_wide), f"minted {too_wide} from {label}")
        a.accept_if(bool(too_wide) or (not made and not is_refusal(response)), f"answered {response.status_code}")

    return run


for _name, _label, _body, _wider in (
    ("read_token_mints_write", "alice-read", lambda a: {"name": "w", "scope": "write"}, lambda a, r: True),
    ("read_token_mints_read", "alice-read", lambda a: {"name": "r", "scope": "read"}, lambda a, r: True),
    ("write_token_mints_admin", "alice-write", lambda a: {"name": "a", "scope": "admin"}, lambda a, r: True),
    ("project_token_mints_unrestricted", "alice-write-web", lambda a: {"name": "u", "scope": "write"},
     lambda a, r: r.project_id != a.world.web.id),
    ("project_token_mints_other_project", "alice-write-web",
     lambda a: {"name": "o", "scope": "read", "project": "acme/lib"}, lambda a, r: r.project_id != a.world.web.id),
):
    CASES.append(Case(f"token-api_{_name}", _api_mint(_label, _body, wider=_wider)))


@case("token-api_revoke_other_users_token")
def _(a: Attempt) -> None:
    victim = a.world.token_ids["bob-read"]
    response = a.client().delete(f"/api/v1/user/tokens/{victim}", headers=_bearer(a, "alice-write"))
    a.accept_if(not token_live(a.world, victim), "revoked bob's token")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")


@case("token-api_project_token_lists_projects")
def _(a: Attempt) -> None:
    response = a.client().get("/api/v1/projects", headers=_bearer(a, "alice-write-web"))
    body = response.get_data(as_text=True)
    a.accept_if("globex" in body, "listed another organisation's project")
    a.accept_if("acme/lib" in body, "a token bound to acme/web listed acme/lib")


def _api_idor(path: Callable, label: str = "alice-write"):
    def run(a: Attempt) -> None:
        response = a.client().get(path(a), headers=_bearer(a, label))
        a.accept_if(not is_refusal(response), f"answered {response.status_code}")
        leaked = _leaks(a, response.get_data(as_text=True), a.world.core)
        a.accept_if(bool(leaked), f"leaked {leaked}")

    return run


for _name, _path in (
    ("job", lambda a: f"/api/v1/jobs/{a.world.core.finished_job}"),
    ("job_log", lambda a: f"/api/v1/jobs/{a.world.core.finished_job}/log"),
    ("job_artifacts", lambda a: f"/api/v1/jobs/{a.world.core.finished_job}/artifacts"),
    ("artifact_download", lambda a: f"/api/v1/jobs/{a.world.core.finished_job}/artifacts/app"),
    ("run_jobs", lambda a: f"/api/v1/runs/{a.world.core.finished_run}/jobs"),
    ("project", lambda a: "/api/v1/projects/globex/core"),
    ("variables", lambda a: "/api/v1/projects/globex/core/variables"),
    ("team_of_other_org", lambda a: "/api/v1/orgs/globex/teams"),
):
    CASES.append(Case(f"idor-api_bearer_{_name}", _api_idor(_path)))


@case("idor-api_bearer_cancel_other_org_run")
def _(a: Attempt) -> None:
    before = run_status(a.world, a.world.core.active_run)
    response = a.client().post(f"/api/v1/runs/{a.world.core.active_run}/cancel", headers=_bearer(a, "alice-write"))
    a.accept_if(run_status(a.world, a.world.core.active_run) != before, "canceled globex's run")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")


@case("oversized-api_token_name_1MB")
def _(a: Attempt) -> None:
    username = a.fresh_user()
    token_id, text = make_token(a, username)
    with a.world.app.db.session() as s:
        s.get(ApiToken, token_id).scope = "write"
    response = a.client().post("/api/v1/user/tokens", json={"name": "n" * MB, "scope": "read"},
                               headers={"Authorization": "Bearer " + text})
    a.accept_if(token_count(a.world, username) > 1, "stored a token with a megabyte name")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")
    if is_refusal(response) and response.status_code != 413 and "name" not in response.get_data(as_text=True):
        a.unclear("the refusal does not name the field")


# -- open redirects after re-authentication and single sign-on ------------------------------------------


def _confirm_redirect(value: str):
    def run(a: Attempt) -> None:
        client = a.signed_in("alice")
        path = "/login/confirm?next=" + quote(value, safe="")
        response = client.post(path, data={"csrf_token": page_token(client, path), "password": PASSWORD})
        assert response.status_code == 302, "the confirmation itself must succeed, or the case proves nothing"
        for target in _follow(client, response):
            a.accept_if(leaves_the_site(target), f"redirected to {target!r}")

    return run


for _name in ("scheme_relative", "absolute", "backslash", "javascript", "tab_inside", "nested_login"):
    CASES.append(Case(f"redirect-confirm_{_name}", _confirm_redirect(NEXT_VALUES[_name])))


def _sso(client, query: str = ""):
    """Start single sign-on at the appliance, let the test peer consent, come back."""
    import requests

    start = client.get(f"/login/sso/oidc{query}")
    if start.status_code != 302:
        return start
    at_peer = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
    back = urlsplit(at_peer.headers["Location"])
    return client.get(f"{back.path}?{back.query}")


def _sso_redirect(value: str):
    def run(a: Attempt) -> None:
        client = a.client()
        response = _sso(client, "?next=" + quote(value, safe=""))
        assert response.status_code == 302 and signed_in_as(client), "the sign-on itself must complete"
        for target in _follow(client, response):
            a.accept_if(leaves_the_site(target), f"redirected to {target!r}")

    return run


for _name in ("scheme_relative", "absolute", "backslash", "javascript", "newline_inside"):
    CASES.append(Case(f"redirect-sso_{_name}", _sso_redirect(NEXT_VALUES[_name])))


@case("sso-callback_with_forged_state")
def _(a: Attempt) -> None:
    import requests

    client = a.client()
    start = client.get("/login/sso/oidc")
    at_peer = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
    back = urlsplit(at_peer.headers["Location"])
    query = "&".join(p if not p.startswith("state=") else "state=forged" + a.marker for p in back.query.split("&"))
    response = client.get(f"{back.path}?{query}")
    a.accept_if(signed_in_as(client), "signed in with a forged OAuth state")
    a.accept_if(response.status_code >= 500, f"answered {response.status_code}")


@case("sso-callback_replayed_in_another_browser")
def _(a: Attempt) -> None:
    import requests

    victim = a.client()
    start = victim.get("/login/sso/oidc")
    at_peer = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
    back = urlsplit(at_peer.headers["Location"])
    attacker = a.client()  # a browser that never started this sign-on
    attacker.get(f"{back.path}?{back.query}")
    a.accept_if(signed_in_as(attacker), "a callback URL signed in a browser that did not start the flow")


@case("sso-callback_error_is_escaped")
def _(a: Attempt) -> None:
    client = a.client()
    evil = "<script>alert(1)</script>"
    response = client.get("/login/sso/oidc/callback?error=" + quote(evil) + "&error_description=" + quote(evil),
                          follow_redirects=True)
    a.accept_if(evil in response.get_data(as_text=True), "the provider's error was put into the page unescaped")


@case("sso-unknown_provider")
def _(a: Attempt) -> None:
    response = a.client().get("/login/sso/..%2F..%2Fadmin")
    a.accept_if(not is_refusal(response), f"answered {response.status_code}")


# -- LDAP filter injection against the real slapd ----------------------------------------------------------

LDAP_NAMES = {
    "close_and_wildcard": "*)(uid=*",
    "wildcard": "*",
    "prefix_wildcard": "le*",
    "suffix_wildcard": "*na",
    "or_injection": "lena)(|(uid=*",
    "escaped_star": "\\2a",
    "nul_truncation": "lena\x00",
    "open_paren": "(",
    "close_paren": ")",
    "trailing_backslash": "lena\\",
    "dn_as_name": "uid=lena,ou=people",
    "very_long": "l" * 5000,
    "null_bind_name": "",
}


def _ldap_case(name: str, password: str = LDAP_PASSWORD):
    def run(a: Attempt) -> None:
        from appliance.models import ExternalIdentity

        with a.world.app.db.session() as s:
            before = (s.scalar(sa.select(sa.func.count()).select_from(User)),
                      s.scalar(sa.select(sa.func.count()).select_from(ExternalIdentity)))
        client = a.client()
        response = sign_in(client, name, password)
        with a.world.app.db.session() as s:
            after = (s.scalar(sa.select(sa.func.count()).select_from(User)),
                     s.scalar(sa.select(sa.func.count()).select_from(ExternalIdentity)))
        a.accept_if(signed_in_as(client), f"{name[:40]!r} signed in")
        a.accept_if(after != before, "an account or a directory link was made")
        a.accept_if(not is_refusal(response), f"answered {response.status_code}")

    return run


for _name, _value in LDAP_NAMES.items():
    CASES.append(Case(f"ldap-{_name}", _ldap_case(_value)))
CASES.append(Case("ldap-nul_password", _ldap_case("lena", "\x00")))
CASES.append(Case("ldap-wildcard_password", _ldap_case("lena", "*")))


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


def test_zz_control_the_identity_sources_work(world):
    """The LDAP, single sign-on and re-authentication cases are refused for the right reason:
    the same flows with honest input sign in and redirect."""
    attempt = Attempt(world, "control-identity")
    directory_user = attempt.client()
    assert sign_in(directory_user, "lena", LDAP_PASSWORD).status_code == 302 and signed_in_as(directory_user)
    single_sign_on = attempt.client()
    answer = _sso(single_sign_on, "?next=/user/tokens")
    assert answer.status_code == 302 and answer.headers["Location"] == "/user/tokens" and signed_in_as(single_sign_on)
    confirmed = attempt.signed_in("alice")
    path = "/login/confirm?next=/user/security"
    answer = confirmed.post(path, data={"csrf_token": page_token(confirmed, path), "password": PASSWORD})
    assert answer.status_code == 302 and answer.headers["Location"] == "/user/security"
    assert attempt.verdict().outcome == REFUSED  # no 5xx on the way


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
