"""Git hosting benchmarks: push -> first job step latency, and clone speed against git daemon.

    .venv/bin/python bench/git_hosting.py [both] [--pushes 30] [--commits 10000] [--files 200] [--clones 5]
    .venv/bin/python bench/git_hosting.py push [--pushes 30] [--no-pipelines-script]
    .venv/bin/python bench/git_hosting.py clone [--commits 10000] [--files 200] [--clones 5]

Both run against a real ``prts up`` (tests/live.py) on its embedded defaults — SQLite
database, Huey on SQLite, its own worker — in a temp data directory. The organisation,
project, a Maintainer and their write token are made through the appliance's services on
the same data directory, as an admin's shell would.

``push``: each sample is a real ``git push`` over smart HTTP (basic auth, the Maintainer's
API token) of a new commit to ``main`` (the protected default branch) of a project whose
``.prts/pipeline.yaml`` has a push trigger and one job whose first step prints the wall
clock (``echo T0=$(date +%s%N)``). Latency = that instant minus the instant just before
``git push`` started: the git client, HTTP, sign-in, ``git http-backend``, the pre- and
post-receive hooks, the push record, then the same path as any trigger (pipeline file read
from git, planning, rows, queue, claim, checkout, sandbox, shell). After each push the same
commit is started once more with ``runs.trigger(..., "manual")`` from this process — the
measurement of ``bench/pipelines.py latency`` — on the same appliance and worker, so the
difference of the two p50s is what git hosting adds. ``bench/pipelines.py latency`` itself
(its own worker, job concurrency 64) is also run and its printed figure repeated, unless
``--no-pipelines-script``. 3 warm-up pushes are not counted.

``clone``: a history of 10,000 commits (each changing a line in one or two of 200 small
files) made with ``git fast-import``, pushed once over HTTP into a project, repacked with
``git gc`` so that both servers send from the same single pack, then cloned in full
(``git clone --quiet``, bare and with a checkout, same flags on both sides) over HTTP
from the appliance and over git:// from a plain ``git daemon --export-all`` serving that
same bare repository on loopback. Runs alternate between the servers (and which goes
first); one untimed clone from each checks the result (tip and commit count) and warms the
page cache. Prints the median seconds of each and the ratio appliance / daemon (lower is
better; 1.0 means hosting adds nothing to what git itself costs).

A measurement that cannot be made (a failed push, a run that does not start or fails, a
clone with the wrong content) stops the script with a non-zero status and no figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import sqlalchemy as sa  # noqa: E402

from _gitrepo import GIT_ENV, build_history, run_git  # noqa: E402
from appliance import repos  # noqa: E402
from appliance.accounts import organisations, tokens, users  # noqa: E402
from appliance.config import load  # noqa: E402
from appliance.context import Appliance  # noqa: E402
from appliance.models import PipelineRun, Role  # noqa: E402
from appliance.pipelines import runs  # noqa: E402
from appliance.pipelines.logs import LogReader  # noqa: E402
from live import LiveAppliance  # noqa: E402
from pipelines import percentile, wait_finished  # noqa: E402
from servers import GitDaemon  # noqa: E402  (the reference server the mirror tests use)
from tests.conftest import make_config  # noqa: E402

ORG, USER = "bench", "maintainer"
PASSWORD = "bench correct horse battery"
PIPELINE = """\
version: "1.0"
name: push-latency
triggers:
  - push: { branches: [main] }
  - manual: {}
stages: [ { name: A, jobs: [ { name: J, steps: [ { run: "echo T0=$(date +%s%N)" } ] } ] } ]
"""
WARM_UP = 3


class MeasurementFailed(RuntimeError):
    """A figure could not be measured; the script exits non-zero with this message."""


class Site:
    """A running ``prts up`` with an organisation, a Maintainer and their write token."""

    def __init__(self, live: LiveAppliance, core: Appliance, token: str):
        self.live, self.core, self.token = live, core, token

    def project(self, name: str) -> int:
        with self.core.db.session() as s:
            org = organisations.get_organisation(s, ORG)
            project = organisations.create_project(s, org, name)
            project_id = project.id
        repos.ensure_repository(self.core.config, project_id)
        return project_id

    def url(self, project: str) -> str:
        host = self.live.url.removeprefix("http://")
        return f"http://{USER}:{urllib.parse.quote(self.token, safe='')}@{host}/{ORG}/{project}.git"


@contextlib.contextmanager
def site(tmp: Path):
    data = tmp / "data"
    # Embedded defaults throughout; tests/live.py pins one web worker, the default is restored.
    live = LiveAppliance(data, PRTS_WEB_WORKERS=str(load(env={}, files=[]).web.workers))
    live.start(timeout=120)
    core = Appliance(make_config(data))
    try:
        with core.db.session() as s:
            org = organisations.create_organisation(s, ORG)
            user = users.create_user(s, USER, PASSWORD, email="maintainer@example.test")
            organisations.grant(s, user, org, Role.MAINTAINER)
            token = tokens.create_token(s, user, "bench", "write")[1]
        yield Site(live, core, token)
    finally:
        code = live.stop()
        core.close()
        if code not in (0, None):
            print(f"note: prts up exited with {code}", file=sys.stderr)


# -- push -> first step ------------------------------------------------------------------


def first_step_clock(core: Appliance, job_id: int) -> float:
    """The wall clock (seconds) the job's first step printed."""
    text = [line.text for line in LogReader(core, job_id, 1).lines(1, 50)]
    printed = [t for t in text if t.startswith("T0=")]
    if not printed:
        raise MeasurementFailed(f"job {job_id} did not print T0=...; its log starts: {text[:5]}")
    return int(printed[0].split("=", 1)[1]) / 1e9


def push_run(core: Appliance, project_id: int, sha: str, timeout: float = 60) -> int:
    """The id of the push run the appliance started for ``sha``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with core.db.session() as s:
            run_id = s.scalar(sa.select(PipelineRun.id).where(PipelineRun.project_id == project_id,
                                                              PipelineRun.commit_sha == sha,
                                                              PipelineRun.event == "push"))
        if run_id is not None:
            return run_id
        time.sleep(0.01)
    raise MeasurementFailed(f"no push run was started for {sha[:12]} within {timeout:.0f} s of the push")


def finished_job(core: Appliance, run_id: int) -> int:
    try:
        return wait_finished(core, run_id, timeout=120)
    except AssertionError as exc:
        raise MeasurementFailed(f"run {run_id} did not succeed: {exc}") from None
    except TimeoutError as exc:
        raise MeasurementFailed(str(exc)) from None


def pipelines_script_p50(runs_count: int) -> tuple[float, str]:
    """Run ``bench/pipelines.py latency`` and return its p50 (ms) and its printed line."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "pipelines.py"), "latency", "--runs",
                           str(runs_count)], capture_output=True, text=True, timeout=1800)
    found = re.search(r"p50 (\d+) ms", done.stdout)
    if done.returncode != 0 or not found:
        raise MeasurementFailed(f"bench/pipelines.py latency failed ({done.returncode}): "
                                f"{(done.stdout + done.stderr).strip()[-2000:]}")
    return float(found.group(1)), done.stdout.strip()


def push(site: Site, args, tmp: Path) -> None:
    project_id = site.project("push-latency")
    work = tmp / "push-work"
    run_git("clone", "--quiet", site.url("push-latency"), str(work))
    run_git("checkout", "--quiet", "-b", "main", cwd=work)
    (work / ".prts").mkdir()
    (work / ".prts" / "pipeline.yaml").write_text(PIPELINE)
    pushed, triggered, client = [], [], []
    for number in range(WARM_UP + args.pushes):
        (work / "counter.txt").write_text(f"{number}\n")
        run_git("add", "--all", cwd=work)
        run_git("commit", "--quiet", "-m", f"push {number}", cwd=work)
        sha = run_git("rev-parse", "HEAD", cwd=work)
        t0 = time.time()
        run_git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work, timeout=120)
        returned = time.time()
        job_id = finished_job(site.core, push_run(site.core, project_id, sha))
        pushed.append(first_step_clock(site.core, job_id) - t0)
        client.append(returned - t0)
        # The same commit through runs.trigger alone, as bench/pipelines.py measures it.
        t0 = time.time()
        run = runs.trigger(site.core, project_id, "refs/heads/main", sha, "manual", None)
        if run is None:
            raise MeasurementFailed(f"the manual trigger of {sha[:12]} started no run")
        triggered.append(first_step_clock(site.core, finished_job(site.core, run.id)) - t0)
        time.sleep(0.2)  # as bench/pipelines.py: the worker goes back to waiting between samples
    pushed, triggered, client = pushed[WARM_UP:], triggered[WARM_UP:], client[WARM_UP:]
    p50, p95 = percentile(pushed, 0.5) * 1000, percentile(pushed, 0.95) * 1000
    t50, t95 = percentile(triggered, 0.5) * 1000, percentile(triggered, 0.95) * 1000
    c50 = percentile(client, 0.5) * 1000
    print(f"push -> first step started, embedded (prts up: SQLite database and queue, its worker), "
          f"{len(pushed)} pushes over HTTP: p50 {p50:.0f} ms, p95 {p95:.0f} ms "
          f"(git push itself returned after p50 {c50:.0f} ms)")
    print(f"trigger -> first step started, same appliance and commits (runs.trigger as in "
          f"bench/pipelines.py): p50 {t50:.0f} ms, p95 {t95:.0f} ms")
    print(f"git hosting adds p50 {p50 - t50:+.0f} ms, p95 {p95 - t95:+.0f} ms; ratio push / trigger "
          f"p50 {p50 / t50:.2f}x")
    if not args.no_pipelines_script:
        script_p50, line = pipelines_script_p50(args.pushes)
        print(f"bench/pipelines.py latency --runs {args.pushes} (its own worker) printed: {line}")
        print(f"push p50 {p50:.0f} ms vs that trigger p50 {script_p50:.0f} ms: git hosting adds "
              f"{p50 - script_p50:+.0f} ms, ratio {p50 / script_p50:.2f}x")


# -- clone: appliance over HTTP vs git daemon ---------------------------------------------


def clone_once(url: str, dest: Path, bare: bool) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    argv = ["git", "clone", "--quiet", *(["--bare"] if bare else []), url, str(dest)]
    t0 = time.perf_counter()
    done = subprocess.run(argv, env={**os.environ, **GIT_ENV}, capture_output=True, timeout=900)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise MeasurementFailed(f"git clone {'--bare ' if bare else ''}from {url.split('@')[-1]} failed: "
                                f"{done.stderr.decode(errors='replace').strip()}")
    return elapsed


def check_clone(dest: Path, tip: str, commits: int, where: str) -> None:
    got_tip = run_git("rev-parse", "HEAD", cwd=dest)
    count = int(run_git("rev-list", "--count", got_tip, cwd=dest))
    if (got_tip, count) != (tip, commits):
        raise MeasurementFailed(f"the clone from {where} has tip {got_tip[:12]} with {count} commits; expected "
                                f"{tip[:12]} with {commits}")


def clone(site: Site, args, tmp: Path) -> None:
    source = tmp / "history.git"
    t0 = time.perf_counter()
    tip = build_history(source, args.commits, args.files)
    made = time.perf_counter() - t0
    project_id = site.project("history")
    t0 = time.perf_counter()
    run_git("push", "--quiet", site.url("history"), "refs/heads/main:refs/heads/main", cwd=source, timeout=1800)
    pushed = time.perf_counter() - t0
    repo = repos.repository_path(site.core.config, project_id)
    if run_git("rev-parse", "refs/heads/main", cwd=repo) != tip:
        raise MeasurementFailed("the pushed history did not land in the project's repository")
    run_git("gc", "--quiet", "--prune=now", cwd=repo)
    packs = list((repo / "objects" / "pack").glob("*.pack"))
    size = sum(p.stat().st_size for p in packs)
    print(f"history: {args.commits} commits over {args.files} files made with git fast-import in {made:.1f} s; "
          f"pushed over HTTP in {pushed:.1f} s; served from {len(packs)} pack(s) of {size / 2**20:.1f} MiB")
    servers = {"appliance": site.url("history")}
    daemon = GitDaemon(repo.parent).start()
    try:
        servers["git daemon"] = daemon.url(repo.name)
        for bare in (True, False):
            kind = "bare clone" if bare else "clone with checkout"
            times: dict[str, list[float]] = {name: [] for name in servers}
            for name, url in servers.items():  # untimed: checks the content, warms the cache
                dest = tmp / "check"
                clone_once(url, dest, bare)
                check_clone(dest, tip, args.commits, name)
                shutil.rmtree(dest)
            for round_ in range(args.clones):
                order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
                for name in order:
                    times[name].append(clone_once(servers[name], tmp / "clone", bare))
            shutil.rmtree(tmp / "clone", ignore_errors=True)
            ours, theirs = statistics.median(times["appliance"]), statistics.median(times["git daemon"])
            print(f"{kind} of {args.commits} commits, median of {args.clones}: appliance (smart HTTP) "
                  f"{ours:.2f} s, git daemon {theirs:.2f} s, ratio appliance / daemon {ours / theirs:.2f}x "
                  f"(lower is better)")
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", choices=("both", "push", "clone"), default="both")
    parser.add_argument("--pushes", type=int, default=30, help="timed pushes (after 3 warm-up pushes)")
    parser.add_argument("--commits", type=int, default=10_000, help="commits in the cloned history")
    parser.add_argument("--files", type=int, default=200, help="files the history's commits change")
    parser.add_argument("--clones", type=int, default=5, help="timed clones per server and kind")
    parser.add_argument("--no-pipelines-script", action="store_true",
                        help="do not also run bench/pipelines.py latency for its figure")
    args = parser.parse_args()
    for name in ("pushes", "commits", "files", "clones"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    try:
        with tempfile.TemporaryDirectory(prefix="prts-bench-git-") as tmp_name, site(Path(tmp_name)) as s:
            if args.what in ("both", "push"):
                push(s, args, Path(tmp_name))
            if args.what in ("both", "clone"):
                clone(s, args, Path(tmp_name))
    # MeasurementFailed and GitFailed are RuntimeErrors, as is prts up failing to start.
    except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
        sys.exit(f"git hosting benchmark: no figure: {exc}")


if __name__ == "__main__":
    main()
