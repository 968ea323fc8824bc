"""Artifacts: files a job keeps, as a gzip'd tar in the object store and a row each.

``collect`` archives a file or directory of a finished job's workspace, ``store`` uploads
the archive and records it, ``open_download`` reads it back checking its sha256,
``extract`` unpacks a needed job's artifacts into a later job's workspace, and ``expire``
removes what outlived ``pipelines.artifact_retention_days``.

The workspace is written by the job, so it is hostile input to both ends:

- ``collect`` walks the tree through directory file descriptors with ``O_NOFOLLOW``, so
  a path swapped for a symlink mid-walk is refused, not followed. It refuses absolute
  paths, ``..`` leaving the workspace, a path resolving outside it through a symlink,
  device files, fifos and sockets. Symlinks *inside* the tree are kept as symlinks when
  their target is relative and stays inside the workspace (``dist/current -> v2``); a
  symlink with an absolute target or one leaving the workspace is refused. Hard links are
  stored as separate copies of the file. Member names are relative to the workspace
  (``dist/app.js``), so extracting into a later workspace puts files where they were.
- ``extract`` checks every member before writing anything: no absolute names, no ``..``,
  no duplicate names, only files, directories and links; no symlink with an absolute
  target or one leaving the destination; hard links only to a file earlier in the same
  archive; no member below another member that is a link, and none writing through a
  symlink already in the destination. Then ``tarfile``'s own ``data`` filter runs too.
"""

from __future__ import annotations

import datetime as dt
import errno
import gzip
import hashlib
import io
import logging
import os
import pathlib
import posixpath
import re
import stat
import tarfile
import zlib
from dataclasses import dataclass

import sqlalchemy as sa
from minio.error import S3Error

from appliance.models import Artifact
from appliance.models.base import utcnow
from appliance.storage.objects import ObjectStoreError

log = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_PATH_LENGTH = 4096
MAX_DEPTH = 128  # directory levels below the collected path
EXPIRE_BATCH = 500
_READ = 1 << 20


class ArtifactError(ValueError):
    """An artifact was refused or is damaged; the message names the path or member."""


class ArtifactTooLarge(ArtifactError):
    pass


class ChecksumMismatch(ArtifactError):
    pass


@dataclass(frozen=True)
class CollectedArtifact:
    file: pathlib.Path  # the .tar.gz written by collect()
    size: int  # bytes of the archive
    sha256: str  # of the archive
    file_count: int  # files and symlinks archived (directories not counted)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ArtifactError(f"artifact name {name!r} must be 1 to 100 letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit")
    return name


def object_key(run_id: int, job_id: int, name: str) -> str:
    return f"artifacts/{int(run_id)}/{int(job_id)}/{check_name(name)}.tar.gz"


# -- collect -------------------------------------------------------------------------------------------------------


class _CappedWriter(io.RawIOBase):
    """The archive file, refusing the first write that takes it past ``max_bytes``; hashes as it goes."""

    def __init__(self, fh, max_bytes: int, what: str):
        self.fh, self.max_bytes, self.what = fh, max_bytes, what
        self.size = 0
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.size + len(data) > self.max_bytes:
            raise ArtifactTooLarge(f"artifact {self.what} is larger than the limit of {self.max_bytes} bytes "
                                   "(compressed)")
        self.fh.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)


def _relative_path(path: str) -> str:
    """``path`` normalised relative to the workspace ("." for the whole of it)."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_LENGTH or "\0" in path:
        raise ArtifactError(f"artifact path {path!r} must be a relative path inside the workspace")
    if path.startswith("/"):
        raise ArtifactError(f"artifact path {path} is absolute; give a path relative to the workspace")
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise ArtifactError(f"artifact path {path} leaves the workspace")
    return normal


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _link_stays_inside(link_dir: str, target: str) -> bool:
    """Whether a relative symlink target, read from ``link_dir`` (a path relative to
    some root), stays inside that root lexically."""
    resolved = posixpath.normpath(posixpath.join(link_dir, target))
    return not (resolved == ".." or resolved.startswith("../") or resolved.startswith("/"))


def collect(workspace: pathlib.Path, path: str, name: str, dest: pathlib.Path, max_bytes: int) -> CollectedArtifact:
    """Archive the file or directory ``path`` of ``workspace`` as a gzip'd tar at ``dest``.

    Raises ArtifactError naming the path when it is refused, ArtifactTooLarge as soon as
    the archive passes ``max_bytes``; ``dest`` is removed then."""
    check_name(name)
    relative = _relative_path(path)
    root = os.path.realpath(workspace)
    target = os.path.realpath(os.path.join(root, relative))
    if not _within(target, root):
        raise ArtifactError(f"artifact path {path} resolves outside the workspace (through a symlink)")
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        raise ArtifactError(f"artifact path {path} does not exist in the workspace") from None
    arc_root = "" if relative == "." else relative
    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    walker = _Walker(root, path, os.path.relpath(target, root))
    try:
        with open(dest, "wb") as fh:
            capped = _CappedWriter(fh, max_bytes, name)
            with gzip.GzipFile(filename="", mode="wb", fileobj=capped, mtime=0) as gz, \
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                walker.tar = tar
                if stat.S_ISDIR(st.st_mode):
                    fd = _open_dir(target, None, path)
                    try:
                        if arc_root:
                            walker.add_dir_entry(arc_root, os.fstat(fd))
                        walker.walk(fd, arc_root, walker.real_root)
                    finally:
                        os.close(fd)
                else:
                    parent = _open_dir(os.path.dirname(target), None, path)
                    try:
                        walker.add(parent, os.path.basename(target), arc_root, walker.real_root)
                    finally:
                        os.close(parent)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return CollectedArtifact(dest, capped.size, capped.hash.hexdigest(), walker.count)


def _open_dir(path: str, dir_fd: int | None, shown: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ArtifactError(f"artifact path {shown} changed into a symlink while it was archived") from None
        raise


class _Walker:
    def __init__(self, root: str, shown: str, real_root: str):
        self.root = root  # the workspace, resolved
        self.shown = shown  # the path as the pipeline gave it, for messages
        self.real_root = "" if real_root == "." else real_root  # collected path relative to the workspace
        self.tar: tarfile.TarFile | None = None
        self.count = 0

    def walk(self, dir_fd: int, arc_dir: str, real_dir: str) -> None:
        if real_dir.count("/") - self.real_root.count("/") > MAX_DEPTH:
            raise ArtifactError(f"artifact path {self.shown} is more than {MAX_DEPTH} directories deep "
                                f"(at {arc_dir})")
        for entry in sorted(os.listdir(dir_fd)):
            self.add(dir_fd, entry, posixpath.join(arc_dir, entry) if arc_dir else entry,
                     posixpath.join(real_dir, entry) if real_dir else entry)

    def add(self, dir_fd: int, entry: str, arcname: str, real: str) -> None:
        st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            fd = _open_dir(entry, dir_fd, arcname)
            try:
                self.add_dir_entry(arcname, os.fstat(fd))
                self.walk(fd, arcname, real)
            finally:
                os.close(fd)
        elif stat.S_ISREG(mode):
            self.add_file(dir_fd, entry, arcname)
        elif stat.S_ISLNK(mode):
            self.add_symlink(dir_fd, entry, arcname, real)
        else:
            kind = ("a fifo" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                    else "a device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
            raise ArtifactError(f"artifact path {arcname} is {kind}; only files, directories and symlinks "
                                "can be archived")

    def _info(self, arcname: str, st: os.stat_result) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        # Permissions only (no setuid/setgid/sticky), no owner: an artifact is data.
        info.mode = stat.S_IMODE(st.st_mode) & 0o777
        info.mtime = int(st.st_mtime)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def add_dir_entry(self, arcname: str, st: os.stat_result) -> None:
        info = self._info(arcname, st)
        info.type = tarfile.DIRTYPE
        self.tar.addfile(info)

    def add_file(self, dir_fd: int, entry: str, arcname: str) -> None:
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ArtifactError(f"artifact path {arcname} changed into a symlink while it was archived") from None
            raise
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # swapped for a fifo or device after the lstat
                raise ArtifactError(f"artifact path {arcname} is not a regular file")
            info = self._info(arcname, st)
            info.size = st.st_size
            self.tar.addfile(info, fh)
        self.count += 1

    def add_symlink(self, dir_fd: int, entry: str, arcname: str, real: str) -> None:
        target = os.readlink(entry, dir_fd=dir_fd)
        if target.startswith("/"):
            raise ArtifactError(f"symlink {arcname} points to the absolute path {target}; only relative "
                                "symlinks inside the workspace can be archived")
        # Inside the workspace where it is now, and where it will be extracted (the same
        # place unless the collected path itself came through a symlink) ...
        if not _link_stays_inside(posixpath.dirname(real), target) \
                or not _link_stays_inside(posixpath.dirname(arcname), target):
            raise ArtifactError(f"symlink {arcname} points outside the workspace ({target})")
        # ... and where the kernel would take it, through any symlinks on the way.
        if not _within(os.path.realpath(os.path.join(self.root, real)), self.root):
            raise ArtifactError(f"symlink {arcname} resolves outside the workspace ({target})")
        info = self._info(arcname, os.stat(entry, dir_fd=dir_fd, follow_symlinks=False))
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        self.tar.addfile(info)
        self.count += 1


# -- store, download, expire -------------------------------------------------------------------------------------


def verify(data: bytes, sha256: str, what: str) -> None:
    """Raise ChecksumMismatch unless ``data`` hashes to ``sha256``."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ChecksumMismatch(f"artifact {what} is damaged: sha256 {actual} where {sha256} was stored")


def store(app, session, job, collected: CollectedArtifact, name: str) -> Artifact:
    """Upload ``collected`` and record it. The object store takes whole bytes, so the
    archive (at most ``pipelines.max_artifact_bytes``) is read into memory once.

    A second upload under the same name by the same job (a retried attempt) replaces the
    first. The object is written before the row, so a row always names an object."""
    check_name(name)
    data = collected.file.read_bytes()
    verify(data, collected.sha256, name)  # the file is the one collect() hashed
    key = object_key(job.run_id, job.id, name)
    app.objects.put(key, data)
    days = app.config.pipelines.artifact_retention_days
    now = utcnow()
    artifact = session.execute(
        sa.select(Artifact).where(Artifact.job_id == job.id, Artifact.name == name)).scalar_one_or_none()
    if artifact is None:
        artifact = Artifact(job_id=job.id, run_id=job.run_id, name=name)
        session.add(artifact)
    artifact.object_key = key
    artifact.size = len(data)
    artifact.sha256 = collected.sha256
    artifact.file_count = collected.file_count
    artifact.created_at = now
    artifact.expires_at = now + dt.timedelta(days=days) if days > 0 else None
    session.flush()
    return artifact


def open_download(app, artifact: Artifact) -> bytes:
    """The archive's bytes; raises ChecksumMismatch when they are not what was stored."""
    data = app.objects.get(artifact.object_key)
    verify(data, artifact.sha256, artifact.name)
    return data


def expire(app, session, now: dt.datetime) -> int:
    """Remove artifacts whose ``expires_at`` has passed: the object, then the row. An object
    the store fails to delete keeps its row, so the next run tries again. Returns how many
    were removed."""
    removed = 0
    last_id = 0
    while True:
        batch = session.execute(
            sa.select(Artifact).where(Artifact.expires_at.is_not(None), Artifact.expires_at <= now,
                                      Artifact.id > last_id)
            .order_by(Artifact.id).limit(EXPIRE_BATCH)).scalars().all()
        if not batch:
            return removed
        for artifact in batch:
            last_id = artifact.id
            try:
                app.objects.delete(artifact.object_key)
            except (ObjectStoreError, S3Error, OSError) as exc:
                log.warning("could not delete artifact object %s: %s", artifact.object_key, exc)
                continue
            session.delete(artifact)
            removed += 1
        session.flush()


# -- extract -------------------------------------------------------------------------------------------------------


def _member_name(member: tarfile.TarInfo) -> str:
    name = member.name
    if not name or "\0" in name:
        raise ArtifactError(f"archive member {name!r} has an empty or invalid name")
    if name.startswith("/"):
        raise ArtifactError(f"archive member {name} has an absolute name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in name.split("/"):
        raise ArtifactError(f"archive member {name} has a '..' component")
    if not parts:
        return "."
    return "/".join(parts)


def _check_members(members: list[tarfile.TarInfo], dest: str) -> None:
    names: dict[str, tarfile.TarInfo] = {}
    links: set[str] = set()
    files_so_far: set[str] = set()
    for member in members:
        name = _member_name(member)
        if name in names and not (member.isdir() and names[name].isdir()):
            raise ArtifactError(f"archive member {member.name} appears twice")
        names[name] = member
        if member.issym() or member.islnk():
            links.add(name)
    for member in members:
        name = _member_name(member)
        shown = member.name
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise ArtifactError(f"archive member {shown} is a device file, fifo or other special file")
        parts = name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in links:
                raise ArtifactError(f"archive member {shown} would be written through the link {prefix}")
        # Nothing may land on or below a symlink already in the destination.
        for i in range(1, len(parts) + 1):
            on_disk = os.path.join(dest, *parts[:i])
            if os.path.islink(on_disk):
                raise ArtifactError(f"archive member {shown} would be written through the symlink "
                                    f"{'/'.join(parts[:i])} in the workspace")
            if not os.path.lexists(on_disk):
                break
        if member.issym():
            target = member.linkname
            if not target or target.startswith("/"):
                raise ArtifactError(f"archive member {shown} is a symlink to the absolute path {target}")
            if not _link_stays_inside(posixpath.dirname(name), target):
                raise ArtifactError(f"archive member {shown} is a symlink pointing outside the workspace ({target})")
        elif member.islnk():
            target = member.linkname
            if not target or target.startswith("/") or ".." in target.split("/"):
                raise ArtifactError(f"archive member {shown} is a hard link to {target}, outside the archive")
            if posixpath.normpath(target) not in files_so_far:
                raise ArtifactError(f"archive member {shown} is a hard link to {target}, which is not a file "
                                    "earlier in the archive")
        if member.isreg():
            files_so_far.add(name)


def extract(archive: bytes | pathlib.Path, dest: pathlib.Path) -> int:
    """Unpack a gzip'd tar made by ``collect`` into ``dest``; returns the members written.

    Every member is checked before anything is written; a refused member raises
    ArtifactError naming it and leaves ``dest`` untouched."""
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)
    source = io.BytesIO(archive) if isinstance(archive, (bytes, bytearray, memoryview)) else open(archive, "rb")
    try:
        with tarfile.open(fileobj=source, mode="r:gz") as tar:
            members = tar.getmembers()
            _check_members(members, root)
            for member in members:
                # Replace, never write into, what the workspace has there: an existing file
                # may be a hard link to something outside it.
                target = os.path.join(root, _member_name(member))
                if not member.isdir() and os.path.lexists(target) and not os.path.isdir(target):
                    os.unlink(target)
            try:
                tar.extractall(root, members=members, filter="data")
            except tarfile.FilterError as exc:
                member = getattr(exc, "tarinfo", None)
                raise ArtifactError(f"archive member {member.name if member else '?'} refused: {exc}") from None
            except OSError as exc:  # a directory where the archive has a file, a full disk
                raise ArtifactError(f"artifact could not be extracted: {exc}") from None
    except (tarfile.ReadError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ArtifactError(f"artifact archive is not a readable tar.gz: {exc}") from None
    finally:
        source.close()
    return len(members)

