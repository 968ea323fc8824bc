"""Mirrors of outside repositories: the URL checks, fetching over a real ``git daemon``,
and the mirroring settings page (secret shown once, Fetch now, permissions).

The outside repository is a bare repository served by ``git daemon`` on a free loopback
port; the appliance's config allow-lists 127.0.0.1 (``webhooks.allowed_hosts``), as an
administrator would for a forge on the local network. Commits are made with real git.
``test_inbound_webhooks`` imports the helpers defined here.
"""

from __future__ import annotations

import fcntl
import html
import re
import threading
import types
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance import repos
from appliance.accounts import organisations, users
from appliance.errors import ValidationError
from appliance.hosting import inbound, mirror, pushes
from appliance.models import InboundDelivery, PipelineRun, Project, Role
from conftest import ADMIN_PASSWORD, AuthActions, csrf_token, make_config, sign_in
from servers import GitDaemon
from tests.pipelinekit import drain, git, make_project

PIPELINE = """
version: "1.0"
name: Mirrored
triggers:
  - push: { branches: [main] }
  - tag: { tags: ["v*"] }
stages:
  - name: Build
    jobs: [ { name: check, steps: [ { run: "true" } ] } ]
"""
PASSWORD = "a long enough password"


class ExternalRepo:
    """A bare repository on the "outside forge", changed through a working clone."""

    def __init__(self, daemon: GitDaemon, name: str = "ext.git"):
        self.path = daemon.base / name
        self.url = daemon.url(name)
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.path))
        self.work = daemon.base.parent / f"work-{name}"
        git("clone", "--quiet", str(self.path), str(self.work))

    def commit(self, files: dict[str, str], branch: str = "main", message: str = "change") -> str:
        git("checkout", "--quiet", "-B", branch, cwd=self.work)
        for path, content in files.items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name: str, annotated: bool = True) -> str:
        git("tag", *(["-a", "-m", name] if annotated else []), name, cwd=self.work)
        git("push", "--quiet", "origin", f"refs/tags/{name}", cwd=self.work)
        return git("rev-parse", f"{name}^{{commit}}", cwd=self.work)

    def delete_branch(self, branch: str) -> None:
        git("push", "--quiet", "origin", "--delete", branch, cwd=self.work)


def register_blueprints(flask_app) -> None:
    """Until the app factory registers them (webapp/__init__.py)."""
    from webapp import hooks, mirroring

    for module in (hooks, mirroring):
        if module.bp.name not in flask_app.blueprints:
            flask_app.register_blueprint(module.bp)


def refs_of(app, project_id: int) -> dict[str, str]:
    return pushes.snapshot_refs(repos.repository_path(app.config, project_id))


def runs_of(app, project_id: int) -> list[PipelineRun]:
    with app.db.session() as s:
        return list(s.scalars(sa.select(PipelineRun).where(PipelineRun.project_id == project_id)
                              .order_by(PipelineRun.number)))


def deliveries_of(app, project_id: int) -> list[InboundDelivery]:
    with app.db.session() as s:
        return list(s.scalars(sa.select(InboundDelivery).where(InboundDelivery.project_id == project_id)
                              .order_by(InboundDelivery.id)))


def mirror_project(app, url: str, org: str = "acme", name: str = "web") -> tuple[int, str]:
    """A project mirroring ``url`` with an inbound secret; (project id, secret)."""
    project_id = make_project(app, org, name)
    with app.db.session() as s:
        project = s.get(Project, project_id)
        mirror.set_mirror_url(s, project, url, app.config)
        secret = inbound.generate_secret(s, project, app.config)
    return project_id, secret


@pytest.fixture
def git_daemon(tmp_path):
    base = tmp_path / "forge"
    base.mkdir()
    daemon = GitDaemon(base).start()
    yield daemon
    daemon.stop()


@pytest.fixture
def external(git_daemon) -> ExternalRepo:
    return ExternalRepo(git_daemon)


@pytest.fixture
def config(tmp_path):
    # An administrator's allow-list for a forge on the local network: the git daemon here.
    return make_config(tmp_path / "data", webhooks__allowed_hosts="127.0.0.1")


# -- the URL ------------------------------------------------------------------------------


def url_problem(app_config, url: str) -> str:
    with pytest.raises(ValidationError) as info:
        mirror.check_mirror_url(url, app_config)
    assert info.value.field == "mirror_url"
    return info.value.message


@pytest.mark.parametrize("url,fragment", [
    ("file:///etc/passwd", "file://"),
    ("ext::sh -c touch% /tmp/pwned", "spaces"),
    ("ext::sh", "https://, http:// or git://"),
    ("ssh://git@github.com/acme/web.git", "https://, http:// or git://"),
    ("git@github.com:acme/web.git", "https://, http:// or git://"),
    ("/srv/git/web.git", "https://, http:// or git://"),
    ("https://user:hunter2@github.com/acme/web.git", "private repositories are not supported yet"),
    ("https://ghp_token@github.com/acme/web.git", "private repositories are not supported yet"),
    ("https://github.com/acme/web.git?ref=x", "query"),
    ("https://github.com:99999/acme/web.git", "port"),
    ("https:///acme/web.git", "no host"),
    ("https://github.com/acme/\x00web.git", "control characters"),
    ("https://github.com/" + "a" * 2000, "at most 2000"),
])
def test_urls_that_are_not_a_public_clone_url_are_refused(config, url, fragment):
    assert fragment in url_problem(config, url)


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "https://169.254.169.254/x.git",
                                 "http://[::1]/x.git", "git://10.0.0.1/x.git"])
def test_metadata_private_and_loopback_addresses_are_refused(config, url):
    # 127.0.0.1 is allow-listed here; none of these is.
    assert "webhooks.allowed_hosts" in url_problem(config, url)


def test_loopback_is_refused_without_the_allow_list(tmp_path, git_daemon):
    plain = make_config(tmp_path / "plain")
    assert "webhooks.allowed_hosts" in url_problem(plain, git_daemon.url("ext.git"))
    allowed = make_config(tmp_path / "allowed", webhooks__allowed_hosts="127.0.0.1")
    assert mirror.check_mirror_url(f" {git_daemon.url('ext.git')} ", allowed) == git_daemon.url("ext.git")


def test_an_empty_url_stops_mirroring(appliance, external):
    project_id, _ = mirror_project(appliance, external.url)
    with appliance.db.session() as s:
        project = s.get(Project, project_id)
        assert project.mirror_url == external.url
        mirror.set_mirror_url(s, project, "  ", appliance.config)
        assert project.mirror_url == ""


# -- fetching -----------------------------------------------------------------------------


def test_fetch_mirrors_branches_and_tags_and_reports_what_moved(appliance, external):
    main = external.commit({"README": "one"})
    feature = external.commit({"a.txt": "a"}, branch="feature")
    tagged = external.tag("v1")
    project_id, _ = mirror_project(appliance, external.url)

    updates = mirror.fetch(appliance, project_id)
    assert {u.ref: (u.old, u.new) for u in updates} == {
        "refs/heads/main": (pushes.ZERO, main), "refs/heads/feature": (pushes.ZERO, feature),
        "refs/tags/v1": (pushes.ZERO, tagged)}
    assert refs_of(appliance, project_id) == {"refs/heads/main": main, "refs/heads/feature": feature,
                                              "refs/tags/v1": tagged}
    assert mirror.fetch(appliance, project_id) == []

    # A branch deleted outside is deleted here (--prune); a force-push moves the ref.
    external.delete_branch("feature")
    git("checkout", "--quiet", "--orphan", "rewritten", cwd=external.work)
    rewritten = external.commit({"README": "rewritten"}, branch="main")
    updates = mirror.fetch(appliance, project_id)
    assert sorted((u.ref, u.old, u.new) for u in updates) == [
        ("refs/heads/feature", feature, pushes.ZERO), ("refs/heads/main", main, rewritten)]
    assert refs_of(appliance, project_id) == {"refs/heads/main": rewritten, "refs/tags/v1": tagged}


def test_fetch_re_checks_the_url_against_the_current_allow_list(appliance, external, tmp_path):
    external.commit({"README": "one"})
    project_id, _ = mirror_project(appliance, external.url)
    # The administrator removed the allow-list entry after the URL was saved.
    narrowed = types.SimpleNamespace(db=appliance.db, config=appliance.config.with_overrides(
        **{"webhooks.allowed_hosts": ""}))
    with pytest.raises(mirror.MirrorError, match="webhooks.allowed_hosts"):
        mirror.fetch(narrowed, project_id)
    assert refs_of(appliance, project_id) == {}


def test_fetch_of_a_project_without_a_mirror_url_says_so(appliance):
    project_id = make_project(appliance)
    with pytest.raises(mirror.MirrorError, match="no mirror URL"):
        mirror.fetch(appliance, project_id)


def test_a_failing_fetch_names_the_url_and_gits_reason(appliance, git_daemon):
    project_id, _ = mirror_project(appliance, git_daemon.url("missing.git"))
    with pytest.raises(mirror.MirrorError) as info:
        mirror.fetch(appliance, project_id)
    assert git_daemon.url("missing.git") in str(info.value) and "failed" in str(info.value)


def test_fetches_of_one_project_wait_for_each_other(appliance, external):
    sha = external.commit({"README": "one"})
    project_id, _ = mirror_project(appliance, external.url)
    repo = repos.repository_path(appliance.config, project_id)
    outcome: list = []
    with open(repo / mirror.LOCK_FILE, "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # another fetch of this project is running
        worker = threading.Thread(target=lambda: outcome.append(mirror.fetch(appliance, project_id)))
        worker.start()
        worker.join(timeout=2)
        assert worker.is_alive() and refs_of(appliance, project_id) == {}
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert [u.ref for u in outcome[0]] == ["refs/heads/main"]
    assert refs_of(appliance, project_id)["refs/heads/main"] == sha


# -- the settings page --------------------------------------------------------------------


@pytest.fixture
def people(appliance, admin, flask_app):
    register_blueprints(flask_app)
    with appliance.db.session() as s:
        org = organisations.create_organisation(s, "acme")
        web = organisations.create_project(s, org, "web")
        for username, role in (("dev", Role.DEVELOPER), ("maint", Role.MAINTAINER), ("outsider", None)):
            user = users.create_user(s, username, PASSWORD)
            if role is not None:
                organisations.grant(s, user, web, role)
        project_id = web.id
    repos.ensure_repository(appliance.config, project_id)
    return project_id


def login(client, username: str) -> None:
    sign_in(client, username, ADMIN_PASSWORD if username == "root" else PASSWORD)


PAGE = "/acme/web/-/settings/mirroring"


def page_token(client) -> str:
    return csrf_token(client.get(PAGE).get_data(as_text=True))


def shown_secret(page: str) -> str | None:
    match = re.search(r'id="inbound-secret"[^>]*value="([^"]+)"', page)
    return html.unescape(match.group(1)) if match else None


def page_token_from(client) -> str:
    return csrf_token(client.get("/").get_data(as_text=True))


def test_an_outsider_gets_404_and_a_developer_403(client, people):
    login(client, "outsider")
    assert client.get(PAGE).status_code == 404
    assert client.post(PAGE + "/fetch", data={"csrf_token": page_token_from(client)}).status_code == 404
    AuthActions(client).logout()
    login(client, "dev")
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE + "/secret", data={"csrf_token": page_token_from(client)}).status_code == 403


def test_the_secret_is_shown_once_and_verifies_deliveries(client, people, appliance):
    login(client, "maint")
    page = client.get(PAGE)
    assert page.status_code == 200 and "No secret" in page.get_data(as_text=True)
    made = client.post(PAGE + "/secret", data={"csrf_token": page_token(client)})
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    text = made.get_data(as_text=True)
    secret = shown_secret(text)
    assert secret and "not shown again" in text
    # Per-forge instructions: a payload URL for each, JSON, the events.
    for forge in ("github", "gitlab", "gitea"):
        assert f"http://localhost/hooks/{forge}/acme/web" in text
    assert "application/json" in text and "Tag push events" in text

    with appliance.db.session() as s:
        stored = s.get(Project, people)
        assert inbound.read_secret(appliance.config, stored) == secret
        assert secret.encode() not in stored.inbound_secret_ciphertext

    again = client.get(PAGE).get_data(as_text=True)
    assert shown_secret(again) is None and secret not in again and "Secret set" in again

    regenerated = shown_secret(client.post(PAGE + "/secret", data={"csrf_token": page_token(client)})
                               .get_data(as_text=True))
    assert regenerated and regenerated != secret
    with appliance.db.session() as s:
        assert inbound.read_secret(appliance.config, s.get(Project, people)) == regenerated

    assert client.post(PAGE + "/secret/delete", data={"csrf_token": page_token(client)}).status_code == 302
    with appliance.db.session() as s:
        assert s.get(Project, people).inbound_secret_ciphertext is None


def test_saving_a_bad_url_shows_the_error_inline_and_keeps_the_old_one(client, people, appliance, external):
    login(client, "maint")
    saved = client.post(PAGE, data={"csrf_token": page_token(client), "mirror_url": external.url})
    assert saved.status_code == 302
    for bad, message in (("http://169.254.169.254/latest/", "webhooks.allowed_hosts"),
                         ("https://me:pw@github.com/acme/web.git", "private repositories are not supported yet"),
                         ("file:///etc/passwd", "https://, http:// or git://")):
        answer = client.post(PAGE, data={"csrf_token": page_token(client), "mirror_url": bad})
        assert answer.status_code == 422
        text = html.unescape(answer.get_data(as_text=True))
        match = re.search(r'id="mirror_url-error">(.*?)</ul>', text, re.S)
        assert match and message in match.group(1), text[-3000:]
    with appliance.db.session() as s:
        assert s.get(Project, people).mirror_url == external.url
    cleared = client.post(PAGE, data={"csrf_token": page_token(client), "mirror_url": ""})
    assert cleared.status_code == 302
    with appliance.db.session() as s:
        assert s.get(Project, people).mirror_url == ""


def test_fetch_now_fetches_starts_pipelines_and_lists_the_outcome(client, people, appliance, external):
    sha = external.commit({".prts/pipeline.yaml": PIPELINE})
    login(client, "maint")
    nothing = client.post(PAGE + "/fetch", data={"csrf_token": page_token(client)}, follow_redirects=True)
    assert "Set a mirror URL first" in nothing.get_data(as_text=True)
    client.post(PAGE, data={"csrf_token": page_token(client), "mirror_url": external.url})
    assert client.post(PAGE + "/fetch", data={"csrf_token": page_token(client)}).status_code == 302
    assert deliveries_of(appliance, people)[0].outcome == "queued"
    drain(appliance)
    assert refs_of(appliance, people) == {"refs/heads/main": sha}
    assert [(r.event, r.ref, r.commit_sha) for r in runs_of(appliance, people)] == [("push", "refs/heads/main", sha)]
    row = deliveries_of(appliance, people)[0]
    assert (row.forge, row.event, row.outcome) == ("manual", "fetch now", "fetched")
    assert "1 pipeline(s) started" in row.detail
    page = client.get(PAGE).get_data(as_text=True)
    assert "Fetch now" in page and "fetched" in page and "refs/heads/main" in page


def test_the_page_escapes_what_deliveries_recorded(client, people, appliance):
    evil = "<script>alert(1)</script>"
    with appliance.db.session() as s:
        s.add(InboundDelivery(project_id=people, forge="github", delivery_id="d-1", event=evil[:50],
                              outcome="ignored", detail=evil))
    login(client, "maint")
    page = client.get(PAGE).get_data(as_text=True)
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_an_http_host_name_is_pinned_to_the_address_that_was_approved(tmp_path):
    from appliance.hosting import netguard

    allowed = netguard.Allowlist.parse("localhost")
    target = netguard.check_url("https://localhost/acme/web.git", allowed, schemes=mirror.SCHEMES)
    shown = f"[{target.address}]" if ":" in target.address else target.address
    assert mirror._pinned_address("https://localhost/acme/web.git", target) == [
        "-c", f"http.curloptResolve=localhost:443:{shown}"]
    literal = netguard.check_url("http://127.0.0.1:8080/x.git", netguard.Allowlist.parse("127.0.0.1"),
                                 schemes=mirror.SCHEMES)
    assert mirror._pinned_address("http://127.0.0.1:8080/x.git", literal) == []
