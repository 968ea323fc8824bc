"""Reading a project's bare repository for the browser: branches, tags, history, trees,
files, commits and their diffs.

Every ref and path is checked (``repos.check_ref`` / ``repos.check_path``) before it can
reach git, revisions are resolved to commit ids first, and git prints every list NUL
separated (``-z``, ``%x00``), so no branch, file name or commit message can break a parser
or turn into an option. Large outputs (files, diffs) are read only up to a cap and
flagged as truncated instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
import re
import subprocess
from collections.abc import Iterator

from appliance import repos
from appliance.errors import ValidationError

MAX_BLOB_BYTES = 1024 * 1024  # a file larger than this is offered as a raw download only
BINARY_SNIFF_BYTES = 8000  # git's own heuristic: a NUL in the first 8000 bytes means binary
MAX_DIFF_FILES = 300
MAX_DIFF_LINES = 5000
MAX_PATCH_BYTES = 4 * 1024 * 1024
LOG_LIMIT = 50

_HEX = re.compile(r"[0-9a-f]{4,64}")
_HUNK = re.compile(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@ ?(.*)")
_COMMIT_FIELDS = ("%H", "%P", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%B")
_COMMIT_FORMAT = "%x00".join(_COMMIT_FIELDS)


class NotAFile(repos.RepositoryError, LookupError):
    """The path names a directory, a submodule or nothing at that revision."""


class NotADirectory(repos.RepositoryError, LookupError):
    """The path names a file (or nothing) at that revision, not a directory."""


# -- what the pages show -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    authored_at: dt.datetime
    committer_name: str
    committer_email: str
    committed_at: dt.datetime
    message: str

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def body(self) -> str:
        return self.message.split("\n", 1)[1].strip("\n") if "\n" in self.message else ""


@dataclasses.dataclass(frozen=True)
class Branch:
    name: str
    sha: str
    date: dt.datetime
    subject: str
    is_default: bool


@dataclasses.dataclass(frozen=True)
class Tag:
    name: str
    sha: str  # the commit the tag points at
    date: dt.datetime  # the tagger's date for an annotated tag, else the commit's
    subject: str  # the tag message's first line, else the commit's
    annotated: bool


@dataclasses.dataclass(frozen=True)
class LogPage:
    commits: list[Commit]
    skip: int
    limit: int
    has_more: bool


@dataclasses.dataclass(frozen=True)
class TreeEntry:
    name: str
    path: str
    kind: str  # "tree", "blob", "symlink" or "submodule"
    mode: str
    sha: str
    size: int | None  # blobs only


@dataclasses.dataclass(frozen=True)
class Blob:
    path: str
    size: int
    data: bytes  # empty when truncated
    binary: bool
    truncated: bool  # larger than max_bytes: not read, offered as a raw download

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclasses.dataclass(frozen=True)
class DiffLine:
    kind: str  # " " context, "+" added, "-" removed, "\\" a "No newline at end of file" note
    old: int | None
    new: int | None
    text: str


@dataclasses.dataclass
class Hunk:
    header: str
    lines: list[DiffLine]


@dataclasses.dataclass
class FileDiff:
    status: str  # A added, M modified, D deleted, R renamed, C copied, T type changed
    old_path: str | None
    new_path: str | None
    additions: int
    deletions: int
    binary: bool
    hunks: list[Hunk] = dataclasses.field(default_factory=list)
    truncated: bool = False  # its lines were cut by the cap (or not read at all)

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""


@dataclasses.dataclass(frozen=True)
class Diff:
    base: str | None  # the first parent, None for a root commit (diffed against the empty tree)
    files: list[FileDiff]
    total_files: int
    truncated: bool


@dataclasses.dataclass(frozen=True)
class Location:
    """A ``<rev>/<path>`` from a URL, split: the revision as written, its commit, the path."""

    rev: str
    sha: str
    path: str


# -- plumbing ------------------------------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _time(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso).astimezone(dt.timezone.utc)


def _fields(raw: bytes) -> list[str]:
    """NUL-separated output as strings, without the terminator's empty tail."""
    parts = raw.split(b"\0")
    if parts and parts[-1] in (b"", b"\n"):
        parts.pop()
    return [_text(p) for p in parts]


def _git_head(repo: pathlib.Path, args: tuple[str, ...], limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of a git command's output, and whether there was more; the
    command is stopped there, so a huge blob or diff is never read whole."""
    with subprocess.Popen(["git", f"--git-dir={repo}", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=repos._env()) as proc:  # the same clean environment as every other git call
        data = proc.stdout.read(limit + 1)
        more = len(data) > limit
        if more:
            proc.kill()
        err = proc.stderr.read() if not more else b""
        code = proc.wait(timeout=repos.GIT_TIMEOUT)
    if not more and code != 0:
        raise repos.RepositoryError(f"git {args[0]} failed: {_text(err).strip()}")
    return data[:limit], more


def is_empty(repo: pathlib.Path) -> bool:
    """True for a repository that has no branch yet (or no repository at all)."""
    if not (repo / "HEAD").exists():
        return True
    return not repos.git(repo, "for-each-ref", "--count=1", "--format=%(refname)", "refs/heads/").strip()


def default_branch(repo: pathlib.Path) -> str | None:
    out = repos.git(repo, "symbolic-ref", "--quiet", "HEAD", check=False).decode().strip()
    return out[len("refs/heads/"):] if out.startswith("refs/heads/") else None


def _ref_names(repo: pathlib.Path) -> tuple[dict[str, str], dict[str, str]]:
    """``({branch: commit}, {tag: commit})``; a tag that points at no commit is left out."""
    if not (repo / "HEAD").exists():
        return {}, {}  # a project's repository is made on its first push or clone
    out = repos.git(repo, "for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)%00",
                    "refs/heads/", "refs/tags/")
    fields = _fields(out.replace(b"\n", b""))
    heads: dict[str, str] = {}
    tags: dict[str, str] = {}
    for i in range(0, len(fields) - 2, 3):
        ref, obj, peeled = fields[i:i + 3]
        if ref.startswith("refs/heads/"):
            heads[ref[len("refs/heads/"):]] = obj
        elif ref.startswith("refs/tags/"):
            tags[ref[len("refs/tags/"):]] = peeled or obj
    return heads, tags


def _commit_sha(repo: pathlib.Path, name: str) -> str | None:
    """The commit a full or abbreviated commit id names, or None. Only hex reaches git, and
    ``--disambiguate`` matches object ids alone (never a ref that happens to be hex)."""
    if not _HEX.fullmatch(name):
        return None
    if repos.is_sha(name):
        candidates = [name]
    else:
        candidates = repos.git(repo, "rev-parse", f"--disambiguate={name}", check=False).decode().split()
    commits = []
    for sha in candidates:
        kind = repos.git(repo, "cat-file", "-t", sha, check=False).decode().strip()
        if kind == "commit":
            commits.append(sha)
    if len(commits) > 1:
        raise ValidationError("revision", f"the commit id {name!r} is ambiguous; give more of it")
    return commits[0] if commits else None


def is_commit_id(text: str) -> bool:
    """A full or abbreviated (4 or more hex digits) commit id, by its form alone."""
    return bool(_HEX.fullmatch(text))


def resolve_revision(repo: pathlib.Path, rev: str) -> str:
    """The commit a branch, tag, full or abbreviated commit id names (in that order)."""
    repos.check_ref(rev, "revision")
    heads, tags = _ref_names(repo)
    sha = heads.get(rev) or tags.get(rev) or _commit_sha(repo, rev)
    if sha is None:
        raise repos.UnknownRef(f"no branch, tag or commit named {rev!r} in the repository")
    return sha


def locate(repo: pathlib.Path, rev_path: str) -> Location:
    """Split ``<rev>/<path>`` as GitLab and Forgejo do: the longest leading part that is a
    branch or tag wins (branch names may hold '/'), else the first part is a commit id."""
    rev_path = rev_path.rstrip("/") if rev_path not in ("", "/") else rev_path
    repos.check_path(rev_path, "revision")
    parts = rev_path.split("/")
    heads, tags = _ref_names(repo)
    for n in range(len(parts), 0, -1):
        rev = "/".join(parts[:n])
        sha = heads.get(rev) or tags.get(rev)
        if sha:
            return Location(rev, sha, "/".join(parts[n:]))
    sha = _commit_sha(repo, parts[0])
    if sha is None:
        raise repos.UnknownRef(f"no branch, tag or commit named {parts[0]!r} in the repository")
    return Location(parts[0], sha, "/".join(parts[1:]))


def _parse_commits(raw: bytes) -> list[Commit]:
    fields = _fields(raw)
    n = len(_COMMIT_FIELDS)
    if len(fields) % n:
        raise repos.RepositoryError("git log printed a commit that could not be read")
    commits = []
    for i in range(0, len(fields), n):
        sha, parents, an, ae, ad, cn, ce, cd, message = fields[i:i + n]
        commits.append(Commit(sha.strip(), tuple(parents.split()), an, ae, _time(ad), cn, ce, _time(cd),
                              message.rstrip("\n")))
    return commits


# -- branches and tags ---------------------------------------------------------------------


def branches(repo: pathlib.Path) -> list[Branch]:
    """Every branch with its last commit; the default branch first, then the newest first."""
    if is_empty(repo):
        return []
    default = default_branch(repo)
    out = repos.git(repo, "for-each-ref", "--sort=-committerdate",
                    "--format=%(refname)%00%(objectname)%00%(committerdate:iso-strict)%00%(contents:subject)%00",
                    "refs/heads/")
    fields = _fields(out.replace(b"\0\n", b"\0"))
    found = []
    for i in range(0, len(fields) - 3, 4):
        ref, sha, date, subject = fields[i:i + 4]
        name = ref[len("refs/heads/"):]
        found.append(Branch(name, sha, _time(date), subject, name == default))
    found.sort(key=lambda b: not b.is_default)  # stable: the rest stay newest first
    return found


def tags(repo: pathlib.Path) -> list[Tag]:
    """Annotated and lightweight tags that point at commits, the newest first."""
    if is_empty(repo):
        return []
    fmt = ("%(refname)%00%(objecttype)%00%(objectname)%00%(*objecttype)%00%(*objectname)%00"
           "%(creatordate:iso-strict)%00%(contents:subject)%00")
    out = repos.git(repo, "for-each-ref", "--sort=-creatordate", f"--format={fmt}", "refs/tags/")
    fields = _fields(out.replace(b"\0\n", b"\0"))
    found = []
    for i in range(0, len(fields) - 6, 7):
        ref, kind, sha, peeled_kind, peeled, date, subject = fields[i:i + 7]
        annotated = kind == "tag"
        target_kind, target = (peeled_kind, peeled) if annotated else (kind, sha)
        if target_kind != "commit":
            continue  # a tag of a tree or blob has no history to browse
        found.append(Tag(ref[len("refs/tags/"):], target, _time(date), subject, annotated))
    return found


# -- history -------------------------------------------------------------------------------


def log(repo: pathlib.Path, rev: str, path: str | None = None, skip: int = 0, limit: int = LOG_LIMIT) -> LogPage:
    """``limit`` commits reachable from ``rev`` (touching ``path`` when given), newest
    first, after skipping ``skip``; ``has_more`` when older ones remain."""
    sha = rev if repos.is_sha(rev) else resolve_revision(repo, rev)
    skip, limit = max(0, int(skip)), max(1, int(limit))
    # --literal-pathspecs: a path is a name, never a glob ("*.txt") or magic (":(exclude)x").
    args = ["--literal-pathspecs", "log", "-z", f"--format={_COMMIT_FORMAT}", f"--skip={skip}",
            f"--max-count={limit + 1}", sha, "--"]
    if path:
        args.append(repos.check_path(path))
    commits = _parse_commits(repos.git(repo, *args))
    return LogPage(commits[:limit], skip, limit, len(commits) > limit)


def commit(repo: pathlib.Path, rev: str) -> Commit:
    """One commit: parents, author, committer, their dates, the whole message."""
    sha = rev if repos.is_sha(rev) else resolve_revision(repo, rev)
    found = _parse_commits(repos.git(repo, "log", "-z", "-1", f"--format={_COMMIT_FORMAT}", sha, "--"))
    if not found:
        raise repos.UnknownRef(f"no commit {rev!r} in the repository")
    return found[0]


# -- trees and files -----------------------------------------------------------------------


def _object_type(repo: pathlib.Path, sha: str, path: str) -> str | None:
    spec = f"{sha}:{repos.check_path(path)}" if path else f"{sha}^{{tree}}"
    return repos.git(repo, "cat-file", "-t", spec, check=False).decode().strip() or None


def _entry_mode(repo: pathlib.Path, sha: str, path: str) -> str | None:
    """The mode of ``path`` in its parent tree (a submodule or symlink is only told apart by it)."""
    out = repos.git(repo, "--literal-pathspecs", "ls-tree", "-z", sha, "--", repos.check_path(path))
    fields = _fields(out)
    return fields[0].split(" ", 1)[0] if fields else None


def tree(repo: pathlib.Path, rev: str, path: str = "") -> list[TreeEntry]:
    """The entries of the directory ``path`` at ``rev``: directories first, then
    submodules, then files (with sizes), each group by name."""
    sha = rev if repos.is_sha(rev) else resolve_revision(repo, rev)
    path = path.strip("/")
    if _object_type(repo, sha, path) != "tree":
        raise NotADirectory(f"there is no directory {path!r} at {sha[:12]}")
    spec = f"{sha}:{path}" if path else f"{sha}^{{tree}}"
    entries = []
    for line in _fields(repos.git(repo, "ls-tree", "-z", "--long", spec)):
        meta, name = line.split("\t", 1)
        mode, kind, obj, size = meta.split()
        if kind == "commit":
            kind = "submodule"
        elif mode == "120000":
            kind = "symlink"
        entries.append(TreeEntry(name, f"{path}/{name}" if path else name, kind, mode, obj,
                                 int(size) if size.isdigit() else None))
    order = {"tree": 0, "submodule": 1}
    entries.sort(key=lambda e: (order.get(e.kind, 2), e.name))
    return entries


def blob(repo: pathlib.Path, rev: str, path: str, max_bytes: int = MAX_BLOB_BYTES) -> Blob:
    """The file ``path`` at ``rev``. A file over ``max_bytes`` is not read (``truncated``);
    ``binary`` when its first 8000 bytes hold a NUL, as git decides."""
    sha = rev if repos.is_sha(rev) else resolve_revision(repo, rev)
    repos.check_path(path)
    if _object_type(repo, sha, path) != "blob":
        raise NotAFile(f"there is no file {path!r} at {sha[:12]}")
    spec = f"{sha}:{path}"
    size = int(repos.git(repo, "cat-file", "-s", spec).decode().strip())
    if size > max_bytes:
        head, _ = _git_head(repo, ("cat-file", "blob", spec), BINARY_SNIFF_BYTES)
        return Blob(path, size, b"", b"\0" in head, True)
    data = repos.git(repo, "cat-file", "blob", spec)
    return Blob(path, size, data, b"\0" in data[:BINARY_SNIFF_BYTES], False)


def blob_kind(repo: pathlib.Path, rev: str, path: str) -> str | None:
    """"tree", "blob", "symlink", "submodule" or None: what ``path`` names at ``rev``."""
    sha = rev if repos.is_sha(rev) else resolve_revision(repo, rev)
    if not path:
        return "tree"
    mode = _entry_mode(repo, sha, path)
    return {"040000": "tree", "160000": "submodule", "120000": "symlink"}.get(mode or "", "blob" if mode else None)


def stream_blob(repo: pathlib.Path, rev: str, path: str, chunk: int = 64 * 1024) -> tuple[int, Iterator[bytes]]:
    """``(size, chunks)`` of a file of any size, read as it is sent (for raw downloads)."""
    sha = rev if repos.is_sha(rev) else resolve_revision(repo, rev)
    repos.check_path(path)
    if _object_type(repo, sha, path) != "blob":
        raise NotAFile(f"there is no file {path!r} at {sha[:12]}")
    spec = f"{sha}:{path}"
    size = int(repos.git(repo, "cat-file", "-s", spec).decode().strip())

    def chunks() -> Iterator[bytes]:
        with subprocess.Popen(["git", f"--git-dir={repo}", "cat-file", "blob", spec], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=repos._env()) as proc:
            try:
                while data := proc.stdout.read(chunk):
                    yield data
            finally:  # the client went away mid-download: do not leave git writing into a pipe
                if proc.poll() is None:
                    proc.kill()

    return size, chunks()


def readme(repo: pathlib.Path, sha: str, entries: list[TreeEntry], max_bytes: int = 256 * 1024) -> Blob | None:
    """The README among a directory's entries (README.md, README, readme.txt, ...), if any."""
    names = sorted((e for e in entries if e.kind == "blob" and e.name.lower().split(".", 1)[0] == "readme"),
                   key=lambda e: (e.name.lower() != "readme.md", e.name))
    if not names:
        return None
    found = blob(repo, sha, names[0].path, max_bytes)
    return None if found.binary or found.truncated else found


# -- a commit's diff -----------------------------------------------------------------------


def _empty_tree(repo: pathlib.Path) -> str:
    return repos.git(repo, "hash-object", "-t", "tree", "--stdin", input=b"").decode().strip()


def _changes(repo: pathlib.Path, base: str, sha: str) -> list[FileDiff]:
    """Per file: status, old and new paths, and +/- counts (from --raw and --numstat, -z)."""
    common = ("diff-tree", "-r", "-z", "-M", "--no-commit-id", "--no-ext-diff", "--no-textconv", base, sha, "--")
    raw = _fields(repos.git(repo, *common[:1], "--raw", *common[1:]))
    files: list[FileDiff] = []
    i = 0
    while i < len(raw):
        status = raw[i].split()[-1][:1]
        if status in "RC":
            files.append(FileDiff(status, raw[i + 1], raw[i + 2], 0, 0, False))
            i += 3
        else:
            old = None if status == "A" else raw[i + 1]
            new = None if status == "D" else raw[i + 1]
            files.append(FileDiff(status, old, new, 0, 0, False))
            i += 2
    numstat = _fields(repos.git(repo, *common[:1], "--numstat", *common[1:]))
    i = n = 0
    while i < len(numstat) and n < len(files):
        added, deleted, path = numstat[i].split("\t", 2)
        i += 3 if path == "" else 1  # a rename prints "+\t-\t", then the old and new paths
        files[n].binary = added == "-"
        files[n].additions = 0 if files[n].binary else int(added)
        files[n].deletions = 0 if files[n].binary else int(deleted)
        n += 1
    return files


def _hunks(patch: str) -> list[Hunk]:
    hunks: list[Hunk] = []
    old = new = 0
    for line in patch.split("\n"):
        match = _HUNK.match(line) if line.startswith("@@") else None
        if match:
            old, new = int(match.group(1)), int(match.group(2))
            hunks.append(Hunk(line, []))
        elif not hunks or not line:
            continue  # the file's header lines (index, mode, rename from/to, ---/+++)
        elif line[0] == "+":
            hunks[-1].lines.append(DiffLine("+", None, new, line[1:]))
            new += 1
        elif line[0] == "-":
            hunks[-1].lines.append(DiffLine("-", old, None, line[1:]))
            old += 1
        elif line[0] == "\\":
            hunks[-1].lines.append(DiffLine("\\", None, None, line[1:].strip()))
        else:
            hunks[-1].lines.append(DiffLine(" ", old, new, line[1:]))
            old, new = old + 1, new + 1
    return hunks


def diff(repo: pathlib.Path, rev: str, *, max_files: int = MAX_DIFF_FILES, max_lines: int = MAX_DIFF_LINES,
         max_bytes: int = MAX_PATCH_BYTES) -> Diff:
    """What ``rev`` changed: against its first parent (so a merge shows what it brought
    in), a root commit against the empty tree. At most ``max_files`` files and
    ``max_lines`` lines of hunks are kept, and ``truncated`` says when something was cut."""
    sha = rev if repos.is_sha(rev) else resolve_revision(repo, rev)
    parents = commit(repo, sha).parents
    base = parents[0] if parents else None
    files = _changes(repo, base or _empty_tree(repo), sha)
    total = len(files)
    kept = files[:max_files]
    patch, cut = _git_head(repo, ("diff-tree", "-r", "-p", "-M", "--no-commit-id", "--no-color", "--no-ext-diff",
                                  "--no-textconv", base or _empty_tree(repo), sha, "--"), max_bytes)
    # One "diff --git" header per file pair, in the same order as --raw; a content line can
    # never start with it (hunk lines start with ' ', '+', '-' or '\').
    chunks = re.split(rb"^diff --git ", patch, flags=re.M)[1:]
    lines_left = max_lines
    truncated = cut or total > max_files
    for n, file in enumerate(kept):
        if n >= len(chunks) or (cut and n == len(chunks) - 1):
            file.truncated = not file.binary and (file.additions + file.deletions) > 0
            truncated = truncated or file.truncated
            if n >= len(chunks):
                continue
        hunks = [] if file.binary else _hunks(_text(chunks[n]))
        count = sum(len(h.lines) for h in hunks)
        if count > lines_left:
            file.truncated, truncated = True, True
            hunks = []
        else:
            lines_left -= count
        file.hunks = hunks
    return Diff(base, kept, total, truncated)
