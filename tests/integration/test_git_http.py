"""The real git client against a running ``prts up``: clone, fetch and push over smart HTTP,
credentials and roles, protected branches, and the pipelines a push starts.

Users, grants, tokens and merge requests are made through the appliance's services on the
same data directory (the embedded SQLite database), as an admin's shell would.
"""

from __future__ import annotations

import base64
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance import repos
from appliance.accounts import organisations, tokens, users
from appliance.context import Appliance
from appliance.models import MergeRequest, PipelineRun, Project, Role
from conftest import make_config
from live import LiveAppliance

PASSWORD = "correct horse battery staple"
PIPELINE = """\
version: "1.0"
name: Hosted
triggers:
  - push: { branches: ["**"], paths: ["src/**"] }
  - tag: { tags: ["v*"] }
  - pull_request: {}
stages:
  - name: test
    jobs:
      - name: unit
        steps: [ { run: "echo ok" } ]
"""


def run_git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.test",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.test", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{done.stderr}")
    return done


class Site:
    def __init__(self, live: LiveAppliance, core: Appliance):
        self.live, self.core = live, core
        self.tokens: dict[str, str] = {}

    def url(self, who: str | None = None, secret: str | None = None, path: str = "acme/web") -> str:
        host = self.live.url.removeprefix("http://")
        if who is None:
            return f"http://{host}/{path}.git"
        return f"http://{who}:{urllib.parse.quote(secret or self.tokens[who], safe='')}@{host}/{path}.git"

    def runs(self) -> list[PipelineRun]:
        with self.core.db.session() as s:
            project = organisations.get_project(s, "acme/web")
            return list(s.scalars(sa.select(PipelineRun).where(PipelineRun.project_id == project.id)
                                  .order_by(PipelineRun.number)))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    data = tmp_path_factory.mktemp("git-http") / "data"
    live = LiveAppliance(data).start()
    core = Appliance(make_config(data))
    site = Site(live, core)
    with core.db.session() as s:
        org = organisations.create_organisation(s, "acme")
        project = organisations.create_project(s, org, "web")
        other = organisations.create_project(s, org, "other")
        for name, role in (("viewer", Role.VIEWER), ("dev", Role.DEVELOPER), ("maint", Role.MAINTAINER),
                           ("outsider", None)):
            user = users.create_user(s, name, PASSWORD, email=f"{name}@example.test")
            if role is not None:
                organisations.grant(s, user, project, role)
                organisations.grant(s, user, other, role)
            site.tokens[name] = tokens.create_token(s, user, "git", "write")[1]
        maint = users.find_user(s, "maint")
        site.tokens["maint-read"] = tokens.create_token(s, maint, "ci", "read")[1]
        site.tokens["maint-other"] = tokens.create_token(s, maint, "other only", "write", project=other)[1]
        project_id = project.id
    repos.ensure_repository(core.config, project_id)
    yield site
    live.stop()
    core.close()


@pytest.fixture
def work(tmp_path):
    return tmp_path / "w"


def commit(work: Path, files: dict[str, str], message: str = "change") -> str:
    for path, content in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(content)
    run_git("add", "--all", cwd=work)
    run_git("commit", "--quiet", "-m", message, cwd=work)
    return run_git("rev-parse", "HEAD", cwd=work).stdout.strip()


def seeded(site: Site, work: Path) -> Path:
    """A clone by the Maintainer with the pipeline on main (pushed once per module)."""
    run_git("clone", "--quiet", site.url("maint"), str(work))
    if not run_git("ls-remote", "--heads", site.url("maint"), "main", cwd=work).stdout.strip():
        run_git("checkout", "--quiet", "-b", "main", cwd=work)
        commit(work, {".prts/pipeline.yaml": PIPELINE, "README.md": "hello\n", "src/app.py": "print(1)\n"}, "first")
        run_git("push", "--quiet", "origin", "main", cwd=work)
    return work


def test_clone_and_fetch_need_credentials_and_read_access(site, work, tmp_path):
    seeded(site, work)
    anonymous = run_git("clone", site.url(), str(tmp_path / "anon"), check=False)
    assert anonymous.returncode != 0
    assert "could not read Username" in anonymous.stderr or "Authentication failed" in anonymous.stderr
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(site.url() + "/info/refs?service=git-upload-pack", timeout=10)
    assert caught.value.code == 401 and caught.value.headers["WWW-Authenticate"].startswith("Basic")
    wrong = run_git("clone", site.url("viewer", "not the password"), str(tmp_path / "wrong"), check=False)
    assert wrong.returncode != 0
    outsider = run_git("clone", site.url("outsider"), str(tmp_path / "outsider"), check=False)
    assert outsider.returncode != 0 and "not found" in outsider.stderr
    # The Viewer clones with a token and with the account's password, in protocol v2 and v0.
    run_git("clone", "--quiet", site.url("viewer"), str(tmp_path / "v2"))
    assert (tmp_path / "v2" / "README.md").read_text() == "hello\n"
    run_git("-c", "protocol.version=0", "clone", "--quiet", site.url("viewer", PASSWORD), str(tmp_path / "v0"))
    assert (tmp_path / "v0" / "src" / "app.py").exists()
    head = commit(work, {"README.md": "hello again\n"})
    run_git("push", "--quiet", "origin", "main", cwd=work)
    run_git("fetch", "--quiet", "origin", cwd=tmp_path / "v2")
    assert run_git("rev-parse", "origin/main", cwd=tmp_path / "v2").stdout.strip() == head


def test_a_token_for_another_project_or_with_read_scope_cannot_push(site, work, tmp_path):
    seeded(site, work)
    elsewhere = run_git("clone", site.url("maint", site.tokens["maint-other"]), str(tmp_path / "x"), check=False)
    assert elsewhere.returncode != 0 and "not found" in elsewhere.stderr
    run_git("checkout", "--quiet", "-b", "scoped", cwd=work)
    commit(work, {"notes.txt": "x\n"})
    refused = run_git("push", site.url("maint", site.tokens["maint-read"]), "scoped", cwd=work, check=False)
    assert refused.returncode != 0 and "write token" in refused.stderr


def test_viewer_push_is_refused(site, work):
    seeded(site, work)
    run_git("checkout", "--quiet", "-b", "viewer-branch", cwd=work)
    commit(work, {"viewer.txt": "v\n"})
    refused = run_git("push", site.url("viewer"), "viewer-branch", cwd=work, check=False)
    assert refused.returncode != 0 and "Developer role" in refused.stderr
    assert not run_git("ls-remote", "--heads", site.url("maint"), "viewer-branch", cwd=work).stdout.strip()


def test_protected_branch_takes_maintainers_only_and_never_force_or_delete(site, work):
    seeded(site, work)
    before = run_git("ls-remote", site.url("maint"), "refs/heads/main", cwd=work).stdout.split()[0]
    commit(work, {"src/dev.py": "print('dev')\n"})
    refused = run_git("push", site.url("dev"), "HEAD:main", cwd=work, check=False)
    assert refused.returncode != 0 and "only Maintainers may push" in refused.stderr
    assert run_git("ls-remote", site.url("maint"), "refs/heads/main", cwd=work).stdout.split()[0] == before
    # A Developer pushes the same commit to a branch that is not protected.
    run_git("push", "--quiet", site.url("dev"), "HEAD:refs/heads/feature/dev", cwd=work)
    # The Maintainer may push main, but not rewrite it or delete it.
    run_git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    run_git("reset", "--quiet", "--hard", "HEAD~1", cwd=work)
    commit(work, {"rewritten.txt": "history\n"})
    forced = run_git("push", "--force", "origin", "HEAD:main", cwd=work, check=False)
    assert forced.returncode != 0 and "force-pushes are refused" in forced.stderr
    deleted = run_git("push", "origin", ":main", cwd=work, check=False)
    assert deleted.returncode != 0 and "cannot be deleted" in deleted.stderr
    # Nothing the appliance keeps for itself can be written from outside.
    odd = run_git("push", "origin", "HEAD:refs/pipelines/1", cwd=work, check=False)
    assert odd.returncode != 0 and "only branches" in odd.stderr


def test_push_runs_the_pipeline_filtered_by_paths_and_tags_fire_tag_triggers(site, work):
    seeded(site, work)
    run_git("checkout", "--quiet", "-b", "topic", cwd=work)
    before = len(site.runs())
    docs_only = commit(work, {"docs/readme.md": "docs\n"})
    run_git("push", "--quiet", site.url("dev"), "topic", cwd=work)
    # A new branch compares with its merge base on main: only docs/ changed, so no run.
    assert [r for r in site.runs()[before:] if r.commit_sha == docs_only] == []
    src = commit(work, {"src/feature.py": "print('feature')\n"})
    run_git("push", "--quiet", site.url("dev"), "topic", cwd=work)
    (push_run,) = [r for r in site.runs() if r.commit_sha == src]
    assert (push_run.event, push_run.ref, push_run.status != "failed") == ("push", "refs/heads/topic", True)
    run_git("tag", "v1.0", cwd=work)
    run_git("push", "--quiet", site.url("dev"), "v1.0", cwd=work)
    tag_runs = [r for r in site.runs() if r.ref == "refs/tags/v1.0"]
    assert [(r.event, r.commit_sha) for r in tag_runs] == [("tag", src)]


def test_push_to_a_branch_with_an_open_merge_request_fires_pull_request(site, work):
    seeded(site, work)
    run_git("checkout", "--quiet", "-b", "mr-branch", cwd=work)
    commit(work, {"src/mr.py": "print('mr')\n"})
    run_git("push", "--quiet", site.url("dev"), "mr-branch", cwd=work)
    with site.core.db.session() as s:
        project = organisations.get_project(s, "acme/web")
        s.add(MergeRequest(project_id=project.id, number=99, title="MR", source_branch="mr-branch",
                           target_branch="main"))
    head = commit(work, {"src/mr.py": "print('mr 2')\n"})
    run_git("push", "--quiet", site.url("dev"), "mr-branch", cwd=work)
    events = sorted((r.event, r.ref) for r in site.runs() if r.commit_sha == head)
    assert events == [("pull_request", "refs/heads/main"), ("push", "refs/heads/mr-branch")]


def test_a_broken_pipeline_file_still_lands_the_push_and_records_a_failed_run(site, work):
    seeded(site, work)
    run_git("checkout", "--quiet", "-b", "broken", cwd=work)
    head = commit(work, {".prts/pipeline.yaml": "stages: [ {name: x, jobs: [ {name: 1, steps: oops} ] }\n",
                         "src/x.py": "x\n"})
    run_git("push", "--quiet", site.url("dev"), "broken", cwd=work)
    assert run_git("ls-remote", site.url("dev"), "refs/heads/broken", cwd=work).stdout.split()[0] == head
    (run,) = [r for r in site.runs() if r.commit_sha == head]
    assert run.status == "failed" and "pipeline.yaml" in run.error


def test_the_clone_url_in_a_browser_leads_to_the_project(site):
    request = urllib.request.Request(site.url(), method="GET")
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(request, timeout=10)
    assert caught.value.code == 302 and caught.value.headers["Location"].endswith("/acme/web")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_failed_credentials_lock_the_account_like_the_login_form(site, tmp_path):
    with site.core.db.session() as s:
        user = users.create_user(s, "locked", PASSWORD)
        token = tokens.create_token(s, user, "git", "read")[1]
    limit = site.core.config.auth.max_failures_per_account
    for i in range(limit):
        failed = run_git("ls-remote", site.url("locked", f"wrong {i}"), check=False)
        assert failed.returncode != 0
    # Even the right token is refused while the account is locked.
    refused = run_git("ls-remote", site.url("locked", token), check=False)
    assert refused.returncode != 0 and "Too many failed sign-in attempts" in refused.stderr


@pytest.mark.parametrize("path", ["acme/..%2F..%2Fetc", "acme/web%00", "acme/-web", "acme/we%20b", "..%2Facme/web"])
def test_repository_paths_that_are_not_slugs_are_not_found(site, path):
    request = urllib.request.Request(f"{site.live.url}/{path}.git/info/refs?service=git-upload-pack")
    request.add_header("Authorization", "Basic " + base64.b64encode(
        f"maint:{site.tokens['maint']}".encode()).decode())
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code in (400, 404)


def test_a_push_larger_than_git_post_buffer_arrives_chunked_and_lands(site, work, tmp_path):
    """git sends bodies over http.postBuffer (1 MiB) with chunked transfer encoding."""
    seeded(site, work)
    run_git("checkout", "--quiet", "-b", "big", cwd=work)
    (work / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    head = commit(work, {"note.txt": "big\n"})
    run_git("push", "--quiet", site.url("dev"), "big", cwd=work)
    run_git("clone", "--quiet", "--branch", "big", site.url("viewer"), str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "blob.bin").read_bytes() == (work / "blob.bin").read_bytes()
    assert run_git("rev-parse", "HEAD", cwd=tmp_path / "copy").stdout.strip() == head


def test_a_push_over_git_max_push_bytes_is_refused_and_changes_nothing(tmp_path):
    data = tmp_path / "small" / "data"
    live = LiveAppliance(data, PRTS_GIT_MAX_PUSH_BYTES="200000").start()
    core = Appliance(make_config(data))
    try:
        with core.db.session() as s:
            org = organisations.create_organisation(s, "acme")
            project = organisations.create_project(s, org, "web")
            user = users.create_user(s, "maint", PASSWORD)
            organisations.grant(s, user, project, Role.MAINTAINER)
            token = tokens.create_token(s, user, "git", "write")[1]
        site = Site(live, core)
        site.tokens["maint"] = token
        work = tmp_path / "w"
        run_git("init", "--quiet", "--initial-branch=main", str(work))
        (work / "blob.bin").write_bytes(os.urandom(1024 * 1024))
        commit(work, {"a.txt": "a\n"})
        refused = run_git("push", site.url("maint"), "main", cwd=work, check=False)
        assert refused.returncode != 0
        assert run_git("ls-remote", "--heads", site.url("maint"), cwd=work).stdout.strip() == ""
        # A push under the limit still works.
        run_git("checkout", "--quiet", "--orphan", "small", cwd=work)
        run_git("rm", "--quiet", "--cached", "blob.bin", cwd=work)
        (work / "blob.bin").unlink()
        commit(work, {"a.txt": "small\n"})
        run_git("push", "--quiet", site.url("maint"), "small:main", cwd=work)
    finally:
        live.stop()
        core.close()


def test_a_mirrored_project_refuses_pushes_but_serves_clones(site, work, tmp_path):
    seeded(site, work)
    with site.core.db.session() as s:
        project = organisations.get_project(s, "acme/web")
        project.mirror_url = "https://example.test/acme/web.git"
    try:
        run_git("checkout", "--quiet", "-b", "to-mirror", cwd=work)
        commit(work, {"m.txt": "m\n"})
        refused = run_git("push", site.url("maint"), "to-mirror", cwd=work, check=False)
        assert refused.returncode != 0 and "push there instead" in refused.stderr
        run_git("clone", "--quiet", site.url("viewer"), str(tmp_path / "clone"))
    finally:
        with site.core.db.session() as s:
            organisations.get_project(s, "acme/web").mirror_url = ""
