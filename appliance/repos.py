"""The project's git repository: one bare repository per project under the data directory.

The pipeline engine needs three things from it: resolve a ref to a commit, read the
pipeline file at a commit, and check a commit out into a job's workspace. Every ref and
path is checked before it reaches git, and git is always run with ``--`` separators and
a clean environment, so user input can never become an option or a second command.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

from appliance.config import Config
from appliance.errors import ValidationError

GIT_TIMEOUT = 60
MAX_BLOB_BYTES = 1024 * 1024
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# Also refused: a component starting with '-' (refs/heads/-rf), which a branch name shown
# and passed on without its refs/heads/ prefix would turn into an option.
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|\.lock(/|$)|/\.|^\.|\.$|/$|(^|/)-")


class RepositoryError(Exception):
    """git refused or failed an operation on a project's repository."""


class UnknownRef(RepositoryError, LookupError):
    pass


def check_ref(ref: str, field: str = "ref") -> str:
    """A branch, tag or full ref name that git accepts and that cannot be read as an option."""
    if not isinstance(ref, str) or not ref or len(ref) > 255:
        raise ValidationError(field, "must be a branch, tag or ref name of 1 to 255 characters")
    if _BAD_REF.search(ref):
        raise ValidationError(field, f"{ref!r} is not a valid ref name (no '..', spaces, control "
                                     "characters, '~^:?*[\\', and no component starting with '-' or '.')")
    return ref


def check_path(path: str, field: str = "path") -> str:
    if not path or path.startswith(("/", "-")) or any(p in ("", ".", "..") for p in path.split("/")) \
            or re.search(r"[\x00-\x1f\x7f]", path):
        raise ValidationError(field, f"{path!r} must be a relative path without '.', '..', control "
                                     "characters or a leading '-'")
    return path


def repository_path(config: Config, project_id: int) -> pathlib.Path:
    return config.repositories_path / f"{int(project_id)}.git"


def _env() -> dict[str, str]:
    # Nothing from the caller's environment or the user's git config steers these commands.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0"}


def git(repo: pathlib.Path, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
    try:
        done = subprocess.run(["git", f"--git-dir={repo}", *args], input=input, capture_output=True,
                              env=_env(), timeout=GIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RepositoryError(f"git {args[0]} took longer than {GIT_TIMEOUT} s") from None
    if check and done.returncode != 0:
        raise RepositoryError(f"git {args[0]} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def is_sha(text: str) -> bool:
    return bool(_SHA.fullmatch(text))


def is_ancestor(repo: pathlib.Path, ancestor: str, commit: str) -> bool:
    done = subprocess.run(["git", f"--git-dir={repo}", "merge-base", "--is-ancestor", ancestor, commit],
                          capture_output=True, env=_env(), timeout=GIT_TIMEOUT)
    if done.returncode not in (0, 1):
        raise RepositoryError(f"git merge-base failed: {done.stderr.decode(errors='replace').strip()}")
    return done.returncode == 0


# pre-receive checks a push through the appliance before any ref moves
# (appliance/hosting/githook.py); post-receive records the updates that landed, for the web
# process to start pipelines from; elsewhere (a push on the file system) both do nothing.
HOOKS = {
    "pre-receive": """#!/bin/sh
# Installed by PRTS: checks a push through the appliance (appliance/hosting/githook.py).
[ -n "$PRTS_HOOK_PYTHON" ] || exit 0
exec "$PRTS_HOOK_PYTHON" -m appliance.hosting.githook pre-receive
""",
    "post-receive": """#!/bin/sh
# Installed by PRTS: records the ref updates of a push through the appliance.
[ -n "$PRTS_PUSH_RECORD" ] || exit 0
exec cat >> "$PRTS_PUSH_RECORD"
""",
}
# Settings of every hosted repository: objects are checked as they arrive (a malformed
# object is refused, not stored), and git's own leftovers never run a hook of their own.
_REPOSITORY_CONFIG = (("receive.fsckObjects", "true"), ("core.logAllRefUpdates", "true"),
                      ("receive.advertisePushOptions", "false"), ("uploadpack.allowFilter", "true"))


def install_hooks(path: pathlib.Path) -> None:
    """Write the appliance's hooks into a repository (idempotent; cheap when up to date)."""
    hooks = path / "hooks"
    hooks.mkdir(exist_ok=True)
    for hook, script in HOOKS.items():
        target = hooks / hook
        if not target.exists() or target.read_text() != script:
            tmp = hooks / f".{hook}.tmp"
            tmp.write_text(script)
            tmp.chmod(0o755)
            tmp.replace(target)


def ensure_repository(config: Config, project_id: int, default_branch: str = "main") -> pathlib.Path:
    path = repository_path(config, project_id)
    if not (path / "HEAD").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "--quiet", "--bare", f"--initial-branch={check_ref(default_branch)}",
                        "--", str(path)], check=True, env=_env(), capture_output=True, timeout=GIT_TIMEOUT)
        for key, value in _REPOSITORY_CONFIG:
            git(path, "config", key, value)
        for sample in (path / "hooks").glob("*.sample"):
            sample.unlink()
    install_hooks(path)
    return path


def resolve(repo: pathlib.Path, ref: str) -> tuple[str, str]:
    """``(full ref, commit sha)`` for a branch name, tag name, full ref or commit sha."""
    check_ref(ref)
    if _SHA.fullmatch(ref):
        sha = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).decode().strip()
        if sha:
            return ref, sha
    candidates = [ref] if ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    for full in candidates:
        sha = git(repo, "rev-parse", "--verify", "--quiet", f"{full}^{{commit}}", check=False).decode().strip()
        if sha:
            return full, sha
    raise UnknownRef(f"no branch, tag or commit named {ref!r} in the repository")


def read_file(repo: pathlib.Path, commit: str, path: str, max_bytes: int = MAX_BLOB_BYTES) -> bytes | None:
    """The file's bytes at ``commit``, or None when it has no such file.
    Raises RepositoryError when the blob is larger than ``max_bytes``."""
    check_path(path)
    if not _SHA.fullmatch(commit):
        raise ValidationError("commit", f"{commit!r} is not a commit id")
    spec = f"{commit}:{path}"
    size = git(repo, "cat-file", "-s", spec, check=False).decode().strip()
    if not size.isdigit():
        return None
    if int(size) > max_bytes:
        raise RepositoryError(f"{path} is {int(size)} bytes at {commit[:12]}; the limit is {max_bytes} bytes")
    return git(repo, "cat-file", "blob", spec)


def checkout(repo: pathlib.Path, commit: str, dest: pathlib.Path) -> None:
    """A working tree of ``commit`` at ``dest`` (which must not exist), with its own .git
    that borrows objects from ``repo`` read-only (alternates), so a job cannot alter the
    project's repository through hard links."""
    if not _SHA.fullmatch(commit):
        raise ValidationError("commit", f"{commit!r} is not a commit id")
    try:
        subprocess.run(["git", "clone", "--quiet", "--shared", "--no-checkout", "--", str(repo), str(dest)],
                       check=True, env=_env(), capture_output=True, timeout=GIT_TIMEOUT)
        subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", "--detach", commit],
                       check=True, env=_env(), capture_output=True, timeout=GIT_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        raise RepositoryError(f"checkout of {commit[:12]} failed: {exc.stderr.decode(errors='replace').strip()}") \
            from None


def commit_files(repo: pathlib.Path, branch: str, files: dict[str, bytes], message: str, *,
                 author: tuple[str, str] = ("PRTS", "prts@localhost")) -> str:
    """Commit ``files`` on top of ``branch`` (created when missing) without a working tree;
    returns the new commit's sha. For the appliance's own commits (the demo project)."""
    import tempfile

    check_ref(branch)
    ref = f"refs/heads/{branch}"
    parent = git(repo, "rev-parse", "--verify", "--quiet", ref, check=False).decode().strip()
    # git refuses an existing empty file as an index; give it a path to create.
    with tempfile.TemporaryDirectory(prefix="prts-index-") as tmp:
        env = {**_env(), "GIT_INDEX_FILE": str(pathlib.Path(tmp) / "index"), "GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1],
               "GIT_COMMITTER_NAME": author[0], "GIT_COMMITTER_EMAIL": author[1]}

        def run(*args: str, data: bytes | None = None) -> str:
            done = subprocess.run(["git", f"--git-dir={repo}", *args], input=data, capture_output=True, env=env,
                                  timeout=GIT_TIMEOUT)
            if done.returncode != 0:
                raise RepositoryError(f"git {args[0]} failed: {done.stderr.decode(errors='replace').strip()}")
            return done.stdout.decode().strip()

        if parent:
            run("read-tree", parent)
        for path, content in files.items():
            blob = run("hash-object", "-w", "--stdin", data=content)
            run("update-index", "--add", "--cacheinfo", f"100644,{blob},{check_path(path)}")
        tree = run("write-tree")
        sha = run("commit-tree", tree, *(["-p", parent] if parent else []), "-m", message)
        run("update-ref", ref, sha, parent or "0" * 40)
    return sha
