"""What a job under bubblewrap cannot do: write the system, see the host's /tmp, read the
data directory (database, keys, other jobs' workspaces, other repositories), see the
worker's processes, keep capabilities, or reach the network when it is switched off.

These run real bubblewrap; they are skipped (with the reason) where it cannot run.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from appliance.executors import make_executor, sandbox
from appliance.executors.base import JobContext
from appliance.executors.sandbox import SandboxUnavailable
from conftest import make_config


@pytest.fixture(autouse=True)
def needs_bubblewrap():
    why = sandbox.probe(network=False) or sandbox.probe(network=True)
    if why:
        pytest.fail(f"bubblewrap does not work here ({why}); make test installs it and the suite needs it")


def run(tmp_path: Path, script: str, *, network: bool = True, env: dict | None = None,
        job_id: int = 1) -> tuple[str, str]:
    """Run one step in a fresh sandboxed job; returns (outcome, output)."""
    config = make_config(tmp_path / "data", pipelines__local__isolation="bubblewrap",
                         pipelines__local__network=network)
    executor = make_executor(config)
    ctx = JobContext(job_id=job_id, attempt=1, workspace=config.workspaces_path / f"{job_id}-1", repository=None,
                     commit="", env=env or {}, timeout_seconds=60, log_path=config.spool_path / f"{job_id}-1.log")
    executor.prepare(ctx)
    try:
        result = executor.run_step(ctx, script)
        return result.outcome, ctx.log_path.read_text()
    finally:
        executor.cleanup(ctx)
        ctx.log_path.unlink(missing_ok=True)


def test_the_system_is_read_only_even_to_root(tmp_path):
    outcome, out = run(tmp_path, "touch /usr/prts-planted || echo touch-refused\n"
                                 "mount -o remount,bind,rw /usr 2>/dev/null || echo remount-refused\n"
                                 "touch /etc/prts-planted || echo etc-refused\n"
                                 "grep CapEff /proc/self/status")
    assert outcome == "success", out
    assert "touch-refused" in out and "remount-refused" in out and "etc-refused" in out
    assert "CapEff:\t0000000000000000" in out
    assert not Path("/usr/prts-planted").exists() and not Path("/etc/prts-planted").exists()


def test_tmp_is_private(tmp_path):
    name = f"prts-sandbox-{os.getpid()}-{tmp_path.name}"
    host_file = Path("/tmp") / f"{name}-host"
    host_file.write_text("host")
    try:
        outcome, out = run(tmp_path, f"echo job > /tmp/{name}\ncat /tmp/{name}\n"
                                     f"test -e {host_file} && echo host-visible || echo host-hidden")
        assert outcome == "success", out
        assert out.splitlines() == ["job", "host-hidden"]
        assert not (Path("/tmp") / name).exists()
    finally:
        host_file.unlink()


def test_the_rest_of_the_data_directory_is_invisible(tmp_path):
    data = tmp_path / "data"
    (data / "workspaces" / "2-1").mkdir(parents=True)
    (data / "workspaces" / "2-1" / "other-job.txt").write_text("another job's file")
    (data / "repositories" / "9.git").mkdir(parents=True)
    (data / "repositories" / "9.git" / "HEAD").write_text("ref: refs/heads/main\n")
    (data / "prts.db").write_text("database")
    (data / "secret_key").write_text("the key")
    (data / "spool").mkdir()
    (data / "spool" / "2-1.log").write_text("another job's log")
    outcome, out = run(tmp_path, f"ls -a {data} {data}/workspaces\n"
                                 f"for f in {data}/prts.db {data}/secret_key {data}/workspaces/2-1/other-job.txt "
                                 f"{data}/repositories/9.git/HEAD {data}/spool/2-1.log; do\n"
                                 "  cat $f 2>/dev/null && echo LEAK $f || echo hidden\n"
                                 "done")
    assert outcome == "success", out
    assert "LEAK" not in out and out.count("hidden") == 5
    assert "prts.db" not in out and "secret_key" not in out and "2-1" not in out


def test_the_workers_processes_are_invisible(tmp_path, monkeypatch):
    monkeypatch.setenv("PRTS_FAKE_SECRET", "worker-secret-value")
    outcome, out = run(tmp_path, f"cat /proc/{os.getpid()}/environ 2>/dev/null || echo no-such-process\n"
                                 "cat /proc/1/environ /proc/*/environ 2>/dev/null | tr '\\0' '\\n'\n"
                                 "ls /proc | grep -c '^[0-9]'")
    assert outcome == "success", out
    assert "worker-secret-value" not in out
    assert int(out.strip().splitlines()[-1]) < 10  # only the job's own few processes


def test_masked_etc_entries_cannot_be_read(tmp_path, monkeypatch):
    # /etc/prts (the appliance's configuration), /etc/shadow, /etc/ssh ... are masked when
    # present; mask entries that exist on every host to check the mechanism without
    # touching the host's /etc. A masked file is /dev/null on a nodev mount: unreadable.
    etc_dir = next(p.name for p in Path("/etc").iterdir() if p.is_dir() and not p.is_symlink() and any(p.iterdir()))
    monkeypatch.setattr(sandbox, "MASKED_ETC", ("passwd", etc_dir))
    outcome, out = run(tmp_path, "cat /etc/passwd || echo passwd-unreadable\n"
                                 f"ls -A /etc/{etc_dir} | wc -l\n"
                                 "test -s /etc/group && echo group-readable")
    assert outcome == "success", out
    assert "root:" not in out
    assert out.splitlines()[-3:] == ["passwd-unreadable", "0", "group-readable"]


def test_network_off_means_no_loopback_either(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        probe = f"bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' 2>/dev/null && echo connected || echo refused"
        outcome, out = run(tmp_path / "off", probe, network=False)
        assert outcome == "success" and out.strip() == "refused"
        outcome, out = run(tmp_path / "on", probe, network=True)
        assert outcome == "success" and out.strip() == "connected"


def test_bubblewrap_required_but_missing_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    sandbox.forget_probes()
    try:
        config = make_config(tmp_path / "data", pipelines__local__isolation="bubblewrap")
        executor = make_executor(config)
        ctx = JobContext(1, 1, config.workspaces_path / "1-1", None, "", {}, 60, config.spool_path / "1-1.log")
        with pytest.raises(SandboxUnavailable, match="isolation is 'bubblewrap' but bwrap is not installed"):
            executor.prepare(ctx)
        assert not ctx.workspace.exists()
        # "auto" runs without it ...
        auto = make_executor(config.with_overrides(pipelines__local__isolation="auto"))
        assert auto.sandboxed is False
        # ... unless the network must be off, which only the sandbox can promise.
        offline = make_executor(config.with_overrides(pipelines__local__isolation="auto",
                                                      pipelines__local__network=False))
        with pytest.raises(SandboxUnavailable, match="network is false"):
            offline.sandboxed
    finally:
        sandbox.forget_probes()


def test_bwrap_command_order(tmp_path):
    """Masks come after the binds they cover; the workspace after the tmpfs over the data dir."""
    data = tmp_path / "data"
    workspace = data / "workspaces" / "1-1"
    repo = data / "repositories" / "1.git"
    argv = sandbox.bwrap_command(workspace=workspace, data_path=data, repositories=[repo], network=False,
                                 argv=["/bin/sh", "-e", "-c", "true"])
    joined = " ".join(argv)
    assert f"--tmpfs {data.resolve()} --bind {workspace.resolve()} {workspace.resolve()}" in joined
    assert f"--ro-bind {repo.resolve()} {repo.resolve()}" in joined
    assert joined.index("--ro-bind /etc /etc") < joined.index("--tmpfs /tmp")
    for flag in ("--unshare-pid", "--die-with-parent", "--new-session", "--unshare-net", "--cap-drop ALL"):
        assert flag in joined
    assert argv[-5:] == ["--", "/bin/sh", "-e", "-c", "true"]
    online = sandbox.bwrap_command(workspace=workspace, data_path=data, network=True, argv=["true"])
    assert "--unshare-net" not in online


def test_etc_files_linking_out_of_the_bound_directories_are_bound_at_their_target(tmp_path):
    target = tmp_path / "stub-resolv.conf"
    target.write_text("nameserver 127.0.0.53\n")
    (tmp_path / "resolv.conf").symlink_to(target)
    (tmp_path / "plain.conf").write_text("")
    assert sandbox._outside_binds([str(tmp_path / "resolv.conf"), str(tmp_path / "plain.conf"),
                                   str(tmp_path / "missing")]) == ["--ro-bind", str(target), str(target)]
