"""A project that mirrors an outside repository: its URL, and fetching it.

The appliance fetches whatever URL a Maintainer typed, from inside the network it runs in,
so the URL is held to what a public forge's clone URL looks like: https, http or git://,
no user name or password (mirrors of private repositories are not supported yet), and a
host that is not loopback, private, link-local or cloud metadata unless an administrator
allow-listed it (``webhooks.allowed_hosts``; ``netguard``). The URL is checked again right
before every fetch: the allow-list or the name's address may have changed since it was
saved.

git itself is held on a short leash: only the three transports are allowed (no
``file://``, ``ext::`` or ssh, also not through a redirect or a submodule), redirects are
not followed, every object received is checked (``transfer.fsckObjects``), no prompt can
wait for a password, and a fetch that takes longer than ``git.http_timeout`` is killed
with all its helpers. The fetch mirrors branches and tags (``--prune``: what the outside
repository deleted goes here too) and the refs before and after make the ``RefUpdate``s
that start pipelines.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import pathlib
import signal
import subprocess
import urllib.parse

from sqlalchemy import orm

from appliance import repos
from appliance.config import Config
from appliance.errors import ValidationError
from appliance.hosting import netguard, pushes
from appliance.models import Project

SCHEMES = ("https", "http", "git")
MAX_URL = 2000
LOCK_FILE = "prts-mirror.lock"
# Git's own settings for one fetch; see the module docstring for why each is here.
FETCH_CONFIG = (
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.git.allow=always",
    "http.followRedirects=false",
    "transfer.fsckObjects=true",
    "credential.helper=",
    "core.askPass=",
)
REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")


class MirrorError(Exception):
    """A fetch of the mirror URL could not be done or failed; the message says why."""


def check_mirror_url(url: str, config: Config) -> str:
    """``url`` (stripped) when the appliance may fetch it; ``ValidationError("mirror_url")``
    naming what is wrong otherwise."""
    return _approve(url, config)[0]


def _approve(url: str, config: Config) -> tuple[str, netguard.Target]:
    """The stripped URL and the ``netguard.Target`` it was approved as."""
    if not isinstance(url, str):
        raise ValidationError("mirror_url", "must be a URL")
    url = url.strip()
    if not url:
        raise ValidationError("mirror_url", "is required")
    if len(url) > MAX_URL:
        raise ValidationError("mirror_url", f"must be at most {MAX_URL} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValidationError("mirror_url", "must not contain spaces or control characters")
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not url.lower().startswith(f"{scheme}://"):
        raise ValidationError("mirror_url", "must start with https://, http:// or git:// (other transports, such "
                                            "as file://, ssh and ext::, are refused)")
    if "@" in parts.netloc:
        raise ValidationError("mirror_url", "must not carry a user name, password or token: mirrors of private "
                                            "repositories are not supported yet, so give the public clone URL")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValidationError("mirror_url", "must not have a query (?) or fragment (#): give the clone URL")
    try:
        host, _port = parts.hostname, parts.port
    except ValueError:
        raise ValidationError("mirror_url", f"{parts.netloc!r} is not a host and optional port") from None
    if not host:
        raise ValidationError("mirror_url", "names no host")
    try:
        target = netguard.check_url(url, netguard.Allowlist.from_config(config), schemes=SCHEMES)
    except netguard.BlockedAddress as exc:
        raise ValidationError("mirror_url", f"cannot be fetched: {exc} (loopback, private, link-local and "
                                            "cloud metadata addresses are refused)") from None
    except ValueError as exc:  # a name that does not resolve, a malformed host
        raise ValidationError("mirror_url", f"cannot be fetched: {exc}") from None
    return url, target


def set_mirror_url(session: orm.Session, project: Project, url: str, config: Config) -> None:
    """Make ``project`` mirror ``url``; an empty ``url`` makes it a hosted project again."""
    url = (url or "").strip() if isinstance(url, str) else url
    project.mirror_url = check_mirror_url(url, config) if url else ""
    session.flush()


def _pinned_address(url: str, target: netguard.Target) -> list[str]:
    """``-c`` options pinning an http(s) URL's host name to the address ``netguard``
    approved, so git cannot resolve the name a second time to another (DNS rebinding).
    git:// has no such option; its host is resolved again by git."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return []
    try:
        ipaddress.ip_address(target.host.strip("[]"))
        return []  # a literal address resolves to itself
    except ValueError:
        pass
    shown = f"[{target.address}]" if ":" in target.address else target.address
    return ["-c", f"http.curloptResolve={target.host}:{target.port}:{shown}"]


@contextlib.contextmanager
def _locked(repo: pathlib.Path):
    """One fetch of a repository at a time, across threads and processes."""
    with open(repo / LOCK_FILE, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _run_fetch(repo: pathlib.Path, url: str, extra: list[str], timeout: int) -> None:
    options = [arg for item in FETCH_CONFIG for arg in ("-c", item)] + extra
    argv = ["git", *options, f"--git-dir={repo}", "fetch", "--quiet", "--prune", "--no-tags",
            "--no-recurse-submodules", "--no-write-fetch-head", "--", url, *REFSPECS]
    # Its own process group: on timeout the remote helper and index-pack die with it.
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=repos._env(), start_new_session=True)
    try:
        _, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise MirrorError(f"fetching {url} took longer than {timeout} s (git.http_timeout)") from None
    if child.returncode != 0:
        message = stderr.decode("utf-8", errors="replace").strip()[-2000:]
        raise MirrorError(f"fetching {url} failed: {message or f'git exited with {child.returncode}'}")


def fetch(app, project_id: int) -> list[pushes.RefUpdate]:
    """Fetch the project's mirror URL into its repository; the refs that moved."""
    with app.db.session() as s:
        project = s.get(Project, project_id)
        if project is None:
            raise MirrorError(f"project {project_id} does not exist")
        url, default_branch = project.mirror_url, project.default_branch
    if not url:
        raise MirrorError("the project has no mirror URL; set one in its mirroring settings")
    try:
        pin = _pinned_address(url, _approve(url, app.config)[1])
    except ValidationError as exc:
        raise MirrorError(f"the mirror URL is refused now: {exc.message}") from None
    repo = repos.ensure_repository(app.config, project_id, default_branch)
    with _locked(repo):
        before = pushes.snapshot_refs(repo)
        _run_fetch(repo, url, pin, app.config.git.http_timeout)
        after = pushes.snapshot_refs(repo)
    return pushes.diff_snapshots(before, after)
