"""Artifacts end to end on both object stores: collect -> store -> open_download -> extract,
replacement on a retried attempt, checksum verification, and expiry."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tarfile

import pytest
import sqlalchemy as sa

from appliance.models import Artifact, PipelineJob
from appliance.models.base import utcnow
from appliance.pipelines import artifacts
from appliance.pipelines.artifacts import ArtifactTooLarge, ChecksumMismatch
from conftest import make_config
from pipelinekit import job_row


@pytest.fixture
def app(tmp_path, objects_values):
    from appliance import migrate
    from appliance.context import Appliance

    appliance = Appliance(make_config(tmp_path / "data", **objects_values))
    migrate.upgrade(appliance.db)
    yield appliance
    appliance.close()


def make_job(app, name: str = "build") -> tuple[int, int]:
    """A run with one job; returns (run id, job id)."""
    return job_row(app, project=f"web-{name}", name=name)


def make_tree(workspace):
    (workspace / "dist" / "sub").mkdir(parents=True)
    (workspace / "dist" / "empty").mkdir()
    (workspace / "dist" / "app.js").write_text("console.log('hi')\n")
    (workspace / "dist" / "sub" / "data.bin").write_bytes(os.urandom(70_000))
    (workspace / "dist" / "run.sh").write_text("#!/bin/sh\n")
    (workspace / "dist" / "run.sh").chmod(0o755)
    (workspace / "dist" / "current").symlink_to("sub")  # a link that stays inside: kept as a link
    (workspace / "src").mkdir()
    (workspace / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    os.link(workspace / "src" / "main.c", workspace / "dist" / "main-copy.c")  # stored as a copy


def snapshot(root) -> dict[str, tuple[str, object]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir", None)
            else:
                with open(path, "rb") as fh:
                    out[rel] = ("file", (hashlib.sha256(fh.read()).hexdigest(), os.stat(path).st_mode & 0o777))
    return out


def test_round_trip(app, tmp_path):
    run_id, job_id = make_job(app)
    workspace = tmp_path / "ws"
    make_tree(workspace)
    collected = artifacts.collect(workspace, "dist/", "site", tmp_path / "out" / "site.tar.gz", max_bytes=1 << 20)
    assert collected.file.exists() and collected.size == collected.file.stat().st_size
    assert collected.sha256 == hashlib.sha256(collected.file.read_bytes()).hexdigest()
    assert collected.file_count == 5  # app.js, data.bin, run.sh, current (link), main-copy.c
    with tarfile.open(collected.file) as tar:
        names = tar.getnames()
        assert all(n == "dist" or n.startswith("dist/") for n in names)
        assert tar.getmember("dist/current").issym() and tar.getmember("dist/current").linkname == "sub"
        assert tar.getmember("dist/main-copy.c").isreg()
        assert {m.uid for m in tar.getmembers()} == {0} and {m.uname for m in tar.getmembers()} == {""}

    before = utcnow()
    with app.db.session() as s:
        job = s.get(PipelineJob, job_id)
        artifact = artifacts.store(app, s, job, collected, "site")
        artifact_id = artifact.id
    with app.db.session() as s:
        artifact = s.get(Artifact, artifact_id)
        assert (artifact.run_id, artifact.job_id, artifact.name) == (run_id, job_id, "site")
        assert artifact.object_key == f"artifacts/{run_id}/{job_id}/site.tar.gz"
        assert (artifact.size, artifact.sha256, artifact.file_count) == (collected.size, collected.sha256, 5)
        assert before + dt.timedelta(days=30) <= artifact.expires_at <= utcnow() + dt.timedelta(days=30)
    assert app.objects.size(artifact.object_key) == collected.size

    data = artifacts.open_download(app, artifact)
    assert data == collected.file.read_bytes()
    later = tmp_path / "later-workspace"
    later.mkdir()
    (later / "README").write_text("from the checkout")
    assert artifacts.extract(data, later) == len(names)
    expected = {k: v for k, v in snapshot(workspace).items() if k == "dist" or k.startswith("dist/")}
    got = snapshot(later)
    assert got.pop("README") == ("file", (hashlib.sha256(b"from the checkout").hexdigest(), 0o644))
    assert got == expected


def test_a_single_file_and_the_whole_workspace(app, tmp_path):
    workspace = tmp_path / "ws"
    make_tree(workspace)
    one = artifacts.collect(workspace, "src/main.c", "main", tmp_path / "one.tar.gz", max_bytes=1 << 20)
    assert one.file_count == 1
    with tarfile.open(one.file) as tar:
        assert tar.getnames() == ["src/main.c"]
    whole = artifacts.collect(workspace, ".", "all", tmp_path / "all.tar.gz", max_bytes=1 << 20)
    target = tmp_path / "restored"
    artifacts.extract(whole.file, target)
    assert snapshot(target) == snapshot(workspace)


def test_a_path_through_a_symlink_inside_the_workspace(tmp_path):
    workspace = tmp_path / "ws"
    make_tree(workspace)
    (workspace / "out").symlink_to("dist/sub")
    collected = artifacts.collect(workspace, "out", "out", tmp_path / "out.tar.gz", max_bytes=1 << 20)
    with tarfile.open(collected.file) as tar:
        assert sorted(tar.getnames()) == ["out", "out/data.bin"]


def test_retention(app, tmp_path, objects_values):
    from appliance.context import Appliance

    forever = Appliance(make_config(tmp_path / "data", pipelines__artifact_retention_days=0, **objects_values))
    try:
        _, job_id = make_job(forever)
        (tmp_path / "ws").mkdir()
        (tmp_path / "ws" / "f").write_text("x")
        collected = artifacts.collect(tmp_path / "ws", "f", "f", tmp_path / "f.tar.gz", max_bytes=4096)
        with forever.db.session() as s:
            assert artifacts.store(forever, s, s.get(PipelineJob, job_id), collected, "f").expires_at is None
    finally:
        forever.close()


def test_a_retried_attempt_replaces_its_artifact(app, tmp_path):
    _, job_id = make_job(app)
    (tmp_path / "ws").mkdir()
    for content in ("first attempt", "second attempt"):
        (tmp_path / "ws" / "f").write_text(content)
        collected = artifacts.collect(tmp_path / "ws", "f", "report", tmp_path / "r.tar.gz", max_bytes=4096)
        with app.db.session() as s:
            artifacts.store(app, s, s.get(PipelineJob, job_id), collected, "report")
    with app.db.session() as s:
        rows = s.execute(sa.select(Artifact).where(Artifact.job_id == job_id)).scalars().all()
        assert len(rows) == 1 and rows[0].sha256 == collected.sha256
        target = tmp_path / "x"
        artifacts.extract(artifacts.open_download(app, rows[0]), target)
        assert (target / "f").read_text() == "second attempt"


def test_a_damaged_object_is_refused(app, tmp_path):
    _, job_id = make_job(app)
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "f").write_text("x")
    collected = artifacts.collect(tmp_path / "ws", "f", "f", tmp_path / "f.tar.gz", max_bytes=4096)
    with app.db.session() as s:
        artifact = artifacts.store(app, s, s.get(PipelineJob, job_id), collected, "f")
    damaged = bytearray(collected.file.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    app.objects.put(artifact.object_key, bytes(damaged))
    with pytest.raises(ChecksumMismatch, match="artifact f is damaged"):
        artifacts.open_download(app, artifact)


def test_expire_removes_objects_then_rows(app, tmp_path):
    _, job_id = make_job(app)
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "f").write_text("x")
    keys = {}
    with app.db.session() as s:
        job = s.get(PipelineJob, job_id)
        for name in ("old", "new", "kept"):
            collected = artifacts.collect(tmp_path / "ws", "f", name, tmp_path / f"{name}.tar.gz", max_bytes=4096)
            artifact = artifacts.store(app, s, job, collected, name)
            keys[name] = artifact.object_key
        rows = {a.name: a for a in s.execute(sa.select(Artifact)).scalars()}
        rows["old"].expires_at = utcnow() - dt.timedelta(minutes=1)
        rows["kept"].expires_at = None
    with app.db.session() as s:
        assert artifacts.expire(app, s, utcnow()) == 1
    with app.db.session() as s:
        assert sorted(a.name for a in s.execute(sa.select(Artifact)).scalars()) == ["kept", "new"]
        assert artifacts.expire(app, s, utcnow()) == 0
    assert not app.objects.exists(keys["old"])
    assert app.objects.exists(keys["new"]) and app.objects.exists(keys["kept"])
    with app.db.session() as s:  # far in the future: "new" expires, "kept" never does
        assert artifacts.expire(app, s, utcnow() + dt.timedelta(days=31)) == 1
    assert not app.objects.exists(keys["new"]) and app.objects.exists(keys["kept"])


def test_the_size_cap_stops_the_archive(tmp_path):
    workspace = tmp_path / "ws"
    (workspace / "big").mkdir(parents=True)
    for i in range(20):
        (workspace / "big" / f"{i}.bin").write_bytes(os.urandom(100_000))  # incompressible: 2 MB
    dest = tmp_path / "big.tar.gz"
    with pytest.raises(ArtifactTooLarge, match="artifact big is larger than the limit of 500000 bytes"):
        artifacts.collect(workspace, "big", "big", dest, max_bytes=500_000)
    assert not dest.exists()
    ok = artifacts.collect(workspace, "big", "big", dest, max_bytes=3_000_000)
    assert ok.size <= 3_000_000 and ok.file_count == 20
