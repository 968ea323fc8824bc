"""The local executor's confinement: resource limits for every job process and, when
bubblewrap runs here, a mount/PID/IPC (and optionally network) namespace around it.

What a sandboxed job sees: the system read-only (``/usr``, ``/etc``, ``/bin``, ``/lib*``,
``/nix/store`` as present), a private ``/tmp``, a fresh ``/proc`` of its own PID
namespace, a minimal ``/dev``, its workspace read-write at the same path it has outside,
and the project's bare repository read-only at its own path (the checkout borrows its
objects through git alternates). Nothing else of the data directory exists inside: the
data directory is a fresh tmpfs there, so the database, the secrets key, the spool and
other jobs' workspaces cannot be read. Appliance configuration and host secrets under
``/etc`` are masked too.

Bubblewrap keeps every capability when it is started by root, and a job holding
CAP_SYS_ADMIN could remount the read-only system read-write; ``--cap-drop ALL`` (with
the no-new-privileges bit bubblewrap sets) leaves a root job none, and it cannot regain
them through exec. A root job still owns root's files: run the worker as a dedicated
user (the NixOS module does) for file permissions to count inside the sandbox too.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

from appliance.executors.base import ExecutorError

PROBE_TIMEOUT = 10

# Linked before any fork: dlopen in a forked child of a threaded process can deadlock.
_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1

# System directories a job may use, read-only. Symlinks among them (/bin -> usr/bin on
# merged-/usr systems) are recreated as symlinks, so paths resolve as they do outside.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/nix/store",
                "/run/current-system", "/run/wrappers")
# Under /etc but not for jobs: the appliance's own configuration and the host's secrets
# (as root a job would read root-owned 0600 files). Masked when present: a directory by
# an empty tmpfs, a file by /dev/null, which on bubblewrap's nodev bind cannot be opened.
MASKED_ETC = ("prts", "credstore", "credstore.encrypted", "ssh", "shadow", "shadow-", "gshadow", "gshadow-",
              "sudoers", "sudoers.d", "security/opasswd")
# /etc files a networked job needs that are often symlinks out of the bound directories.
ETC_LINKS_FOLLOWED = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf")


class SandboxUnavailable(ExecutorError):
    """Bubblewrap was asked for but cannot run here; the message says why."""


@dataclass(frozen=True)
class Limits:
    """rlimits applied to a job's first process, inherited by everything it starts.

    RLIMIT_NPROC counts every process of the user, not of the job, and the kernel does not
    enforce it at all for root: it bounds fork bombs only when the worker runs as its own
    unprivileged user."""

    max_processes: int
    max_memory_mb: int
    max_file_mb: int

    @classmethod
    def from_config(cls, config) -> "Limits":
        return cls(config["pipelines.local.max_processes"], config["pipelines.local.max_memory_mb"],
                   config["pipelines.local.max_file_mb"])

    def rlimits(self) -> list[tuple[int, int]]:
        mib = 1024 * 1024
        return [
            (resource.RLIMIT_NPROC, self.max_processes),
            (resource.RLIMIT_AS, self.max_memory_mb * mib),
            (resource.RLIMIT_FSIZE, self.max_file_mb * mib),
            (resource.RLIMIT_CORE, 0),
        ]


def child_setup(limits: Limits) -> Callable[[], None]:
    """A ``preexec_fn`` for subprocess: the limits, and death with the thread that forks.

    It runs between fork and exec in a copy of a threaded process, so it only makes
    system calls on values computed here, before the fork."""
    rlimits = [(which, (value, value)) for which, value in limits.rlimits()]
    parent = os.getpid()

    def setup() -> None:
        for which, pair in rlimits:
            soft, hard = resource.getrlimit(which)
            # Never raise a hard limit the worker itself runs under (that needs privilege).
            cap = pair[0] if hard == resource.RLIM_INFINITY else min(pair[0], hard)
            resource.setrlimit(which, (cap, cap))
        # The kernel sends SIGKILL when the forking *thread* ends; runner threads live for
        # the whole step, so this means "when the worker dies".
        if _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:  # the worker died before the line above
            os._exit(127)

    return setup


# -- bubblewrap ---------------------------------------------------------------------------------------------------

_probe_lock = threading.Lock()
_probe_cache: dict[tuple[str, bool], str | None] = {}


def bwrap_path() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin:/run/current-system/sw/bin:"
                                      + os.environ.get("PATH", ""))


def _namespace_flags(network: bool) -> list[str]:
    flags = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if not network:
        flags.append("--unshare-net")
    return flags


def probe(network: bool) -> str | None:
    """None when bubblewrap runs here with the flags a job gets, else why not. Cached per
    process: a host does not grow or lose user namespaces while the worker runs."""
    binary = bwrap_path()
    if binary is None:
        return "bwrap is not installed (no bwrap on PATH)"
    key = (binary, network)
    with _probe_lock:
        if key not in _probe_cache:
            _probe_cache[key] = _run_probe(binary, network)
        return _probe_cache[key]


def _run_probe(binary: str, network: bool) -> str | None:
    argv = [binary, *_system_binds(), "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev",
            *_namespace_flags(network), "--", "/bin/sh", "-c", "exit 0"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT,
                              env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{binary} could not be started: {exc}"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        return f"{binary} {' '.join(_namespace_flags(network))} fails here: {why}"
    return None


def forget_probes() -> None:
    """For tests: probe again on next use."""
    with _probe_lock:
        _probe_cache.clear()


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _outside_binds(paths: Iterable[str]) -> list[str]:
    """/etc files that are symlinks to places not bound otherwise (resolv.conf ->
    /run/systemd/resolve/stub-resolv.conf): bind their targets, or they dangle inside."""
    args: list[str] = []
    bound = [p for p in SYSTEM_PATHS if os.path.isdir(p) and not os.path.islink(p)]
    for path in paths:
        real = os.path.realpath(path)
        if real != path and os.path.isfile(real) and not any(_is_within(pathlib.Path(real), pathlib.Path(b))
                                                              for b in bound):
            args += ["--ro-bind", real, real]
    return args


def _masks() -> list[str]:
    args: list[str] = []
    for name in MASKED_ETC:
        path = os.path.join("/etc", name)
        if os.path.isdir(path):  # a directory, or a link to one (mounting follows the link)
            args += ["--tmpfs", path]
        elif os.path.lexists(path):
            args += ["--ro-bind", "/dev/null", path]
    return args


def _is_within(path: pathlib.Path, parent: pathlib.Path) -> bool:
    return path == parent or parent in path.parents


def bwrap_command(*, workspace: pathlib.Path, data_path: pathlib.Path, repositories: Iterable[pathlib.Path] = (),
                  network: bool, argv: list[str]) -> list[str]:
    """The bubblewrap command line that runs ``argv`` confined to ``workspace``.

    bubblewrap applies its mount options in order, so masks come after the binds they
    cover and the workspace after the tmpfs hiding the rest of the data directory."""
    binary = bwrap_path()
    if binary is None:
        raise SandboxUnavailable("bwrap is not installed (no bwrap on PATH)")
    workspace = pathlib.Path(workspace).resolve()
    data_path = pathlib.Path(data_path).resolve()
    args = [binary, *_system_binds(), *_masks(), "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
    args += _outside_binds(ETC_LINKS_FOLLOWED if network else ())
    # Hide the data directory wherever it lives: under /tmp, /etc or /usr it would
    # otherwise come in with the binds above. (A data directory that *contains* the
    # system directories, such as "/", cannot be hidden this way and is not hidden.)
    if not any(_is_within(pathlib.Path(p), data_path) for p in SYSTEM_PATHS):
        args += ["--tmpfs", str(data_path)]
    args += ["--bind", str(workspace), str(workspace)]
    for repo in repositories:
        repo = pathlib.Path(repo).resolve()
        args += ["--ro-bind", str(repo), str(repo)]
    args += ["--chdir", str(workspace), *_namespace_flags(network), "--", *argv]
    return args
