"""Artifact paths are hostile input: a job controls the workspace that is archived, and an
archive is unpacked into a later job's workspace. Every way out is refused, by name."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile

import pytest

from appliance.pipelines import artifacts
from appliance.pipelines.artifacts import ArtifactError


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "ws"
    (ws / "dist" / "sub").mkdir(parents=True)
    (ws / "dist" / "app.js").write_text("app")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("not for artifacts")
    return ws


def collect(ws, path, name="site", max_bytes=1 << 20):
    return artifacts.collect(ws, path, name, ws.parent / "out" / f"{name}.tar.gz", max_bytes=max_bytes)


# -- collect ------------------------------------------------------------------------------------------------------


def test_missing_path_is_named(workspace):
    (workspace / "dist" / "app.js").unlink()
    (workspace / "dist" / "sub").rmdir()
    (workspace / "dist").rmdir()
    with pytest.raises(ArtifactError, match=r"^artifact path dist/ does not exist in the workspace$"):
        collect(workspace, "dist/")


@pytest.mark.parametrize("path, message", [
    ("/etc", "artifact path /etc is absolute"),
    ("/", "artifact path / is absolute"),
    ("..", "artifact path .. leaves the workspace"),
    ("../outside", "artifact path ../outside leaves the workspace"),
    ("dist/../../outside", "artifact path dist/../../outside leaves the workspace"),
    ("", "must be a relative path"),
    ("dist\0x", "must be a relative path"),
])
def test_paths_outside_the_workspace(workspace, path, message):
    with pytest.raises(ArtifactError, match=message.replace(".", r"\.")):
        collect(workspace, path)


def test_dotdot_inside_the_workspace_is_fine(workspace):
    assert collect(workspace, "dist/sub/../app.js").file_count == 1


def test_a_path_resolving_outside_through_a_symlink(workspace, tmp_path):
    (workspace / "escape").symlink_to(tmp_path / "outside")
    (workspace / "rel-escape").symlink_to("../outside")
    (workspace / "etc").symlink_to("/etc")
    for path in ("escape", "escape/secret.txt", "rel-escape", "etc", "etc/passwd"):
        with pytest.raises(ArtifactError, match=f"artifact path {path} resolves outside the workspace"):
            collect(workspace, path)


@pytest.mark.parametrize("link, target, message", [
    ("dist/passwd", "/etc/passwd", "symlink dist/passwd points to the absolute path /etc/passwd"),
    ("dist/abs-inside", "{ws}/dist/app.js", "symlink dist/abs-inside points to the absolute path"),
    ("dist/up", "../../outside/secret.txt", "symlink dist/up points outside the workspace"),
    ("dist/sub/deep", "../../../outside", "symlink dist/sub/deep points outside the workspace"),
])
def test_symlinks_in_the_tree_pointing_outside(workspace, link, target, message):
    (workspace / link).symlink_to(target.format(ws=workspace))
    with pytest.raises(ArtifactError, match=message):
        collect(workspace, "dist")
    assert not (workspace.parent / "out" / "site.tar.gz").exists()


def test_a_symlink_escaping_through_another_symlink(workspace, tmp_path):
    # Lexically "hop/../x" stays inside; the kernel follows hop first and lands outside.
    (workspace / "dist" / "hop").symlink_to(tmp_path / "outside")
    with pytest.raises(ArtifactError, match="symlink dist/hop points to the absolute path"):
        collect(workspace, "dist")
    (workspace / "dist" / "hop").unlink()
    (workspace / "dist" / "hop").symlink_to("../../outside")
    with pytest.raises(ArtifactError, match="symlink dist/hop points outside the workspace"):
        collect(workspace, "dist")


def test_symlinks_that_stay_inside_are_kept(workspace):
    (workspace / "dist" / "current").symlink_to("sub")
    (workspace / "dist" / "sub" / "app").symlink_to("../app.js")
    (workspace / "dist" / "dangling").symlink_to("not-yet")
    collected = collect(workspace, "dist")
    with tarfile.open(collected.file) as tar:
        assert tar.getmember("dist/current").linkname == "sub"
        assert tar.getmember("dist/sub/app").linkname == "../app.js"


def test_fifos_sockets_and_devices_are_refused(workspace, tmp_path):
    os.mkfifo(workspace / "dist" / "pipe")
    with pytest.raises(ArtifactError, match="artifact path dist/pipe is a fifo"):
        collect(workspace, "dist")
    with pytest.raises(ArtifactError, match="artifact path dist/pipe is a fifo"):
        collect(workspace, "dist/pipe")
    os.unlink(workspace / "dist" / "pipe")

    short = tmp_path / "s"  # AF_UNIX paths are short; bind in a short directory and move it in
    short.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(short / "sock"))
        os.rename(short / "sock", workspace / "dist" / "sock")
        with pytest.raises(ArtifactError, match="artifact path dist/sock is a socket"):
            collect(workspace, "dist")
    finally:
        sock.close()
    os.unlink(workspace / "dist" / "sock")

    try:
        os.mknod(workspace / "dist" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.fail("mknod needs CAP_MKNOD: the suite runs as root, as make test does")
    with pytest.raises(ArtifactError, match="artifact path dist/null is a device file"):
        collect(workspace, "dist")


@pytest.mark.parametrize("name", ["", ".hidden", "-rf", "a/b", "../x", "a b", "x" * 101, "ünï", "a\nb"])
def test_names_must_be_slugs(workspace, name):
    with pytest.raises(ArtifactError, match="artifact name"):
        collect(workspace, "dist", name=name)


def test_object_keys_are_built_from_checked_parts():
    assert artifacts.object_key(3, 14, "site.v1") == "artifacts/3/14/site.v1.tar.gz"
    with pytest.raises(ArtifactError):
        artifacts.object_key(3, 14, "../../x")


# -- extract ------------------------------------------------------------------------------------------------------


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def reg(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "later" / "ws"
    d.mkdir(parents=True)
    (d / "README").write_text("checkout")
    return d


def listing(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(p, n), root) for p, ds, fs in os.walk(root) for n in ds + fs)


@pytest.mark.parametrize("members, refused", [
    ([reg("ok"), reg("../evil")], "../evil"),
    ([reg("a/../../evil")], "a/../../evil"),
    ([reg("/etc/x")], "/etc/x"),
    ([special("link", tarfile.SYMTYPE, "/etc"), reg("link/passwd")], "link"),
    ([special("link", tarfile.SYMTYPE, "../.."), reg("link/x")], "link"),
    ([special("sub", tarfile.DIRTYPE), special("sub/up", tarfile.SYMTYPE, "../../outside")], "sub/up"),
    ([special("h", tarfile.LNKTYPE, "/etc/passwd")], "h"),
    ([special("h", tarfile.LNKTYPE, "../outside/secret")], "h"),
    ([special("h", tarfile.LNKTYPE, "not-in-archive")], "h"),
    ([special("null", tarfile.CHRTYPE)], "null"),
    ([special("disk", tarfile.BLKTYPE)], "disk"),
    ([special("pipe", tarfile.FIFOTYPE)], "pipe"),
    ([reg("twice", b"1"), reg("twice", b"2")], "twice"),
])
def test_crafted_archives_are_refused_before_anything_is_written(dest, tmp_path, members, refused):
    (tmp_path / "later" / "outside").mkdir(exist_ok=True)
    before = listing(tmp_path)
    with pytest.raises(ArtifactError, match=f"archive member {refused.replace('.', '[.]')} "):
        artifacts.extract(tar_of(*members), dest)
    assert listing(tmp_path) == before
    assert not (tmp_path / "later" / "evil").exists() and not (tmp_path / "evil").exists()


def test_symlink_then_member_through_it_even_when_the_link_looks_harmless(dest):
    # "link" -> "sub" stays inside, but nothing is written through any link member.
    archive = tar_of(special("sub", tarfile.DIRTYPE), special("link", tarfile.SYMTYPE, "sub"), reg("link/f"))
    with pytest.raises(ArtifactError, match="archive member link/f would be written through the link link"):
        artifacts.extract(archive, dest)


def test_a_symlink_already_in_the_workspace_is_not_written_through(dest, tmp_path):
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    (dest / "dist").symlink_to(outside)  # committed to the repository, say
    with pytest.raises(ArtifactError, match="archive member dist/app.js would be written through the symlink dist"):
        artifacts.extract(tar_of(reg("dist/app.js", b"owned")), dest)
    assert list(outside.iterdir()) == []
    (dest / "file-link").symlink_to(outside / "target")
    with pytest.raises(ArtifactError, match="archive member file-link would be written through the symlink"):
        artifacts.extract(tar_of(reg("file-link", b"owned")), dest)
    assert not (outside / "target").exists()


def test_an_existing_hard_link_is_replaced_not_written_into(dest, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("original")
    os.link(victim, dest / "shared")
    artifacts.extract(tar_of(reg("shared", b"from the artifact")), dest)
    assert victim.read_text() == "original"
    assert (dest / "shared").read_text() == "from the artifact"


def test_safe_links_and_modes(dest):
    archive = tar_of(special("dist", tarfile.DIRTYPE), reg("dist/app", b"#!/bin/sh\n", mode=0o4755),
                     special("dist/current", tarfile.SYMTYPE, "app"), special("dist/hard", tarfile.LNKTYPE, "dist/app"))
    assert artifacts.extract(archive, dest) == 4
    assert (dest / "dist" / "current").readlink().as_posix() == "app"
    assert (dest / "dist" / "hard").read_bytes() == b"#!/bin/sh\n"
    assert not (dest / "dist" / "app").stat().st_mode & stat.S_ISUID  # the data filter drops setuid


def test_garbage_is_not_an_archive(dest):
    with pytest.raises(ArtifactError, match="not a readable tar.gz"):
        artifacts.extract(b"not a tarball at all", dest)
    with pytest.raises(ArtifactError, match="not a readable tar.gz"):
        artifacts.extract(tar_of(reg("f", b"x" * 10_000))[:-40], dest)


def test_a_tree_too_deep_is_refused_not_a_crash(workspace):
    deep = workspace / "dist"
    for _ in range(artifacts.MAX_DEPTH + 2):
        deep = deep / "d"
    deep.mkdir(parents=True)
    with pytest.raises(ArtifactError, match="artifact path dist is more than 128 directories deep"):
        collect(workspace, "dist")
