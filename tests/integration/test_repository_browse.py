"""appliance.hosting.browse against real repositories made with the git CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from appliance.errors import ValidationError
from appliance.hosting import browse

XSS_NAME = "<img src=x onerror=alert(1)>.txt"
HTML_MESSAGE = "Fix <script>alert(1)</script> & more\n\nBody with <b>tags</b>."


def run(work: Path, *args: str, env: dict | None = None) -> str:
    base = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.test",
            "GIT_COMMITTER_NAME": "Cy", "GIT_COMMITTER_EMAIL": "cy@example.test", "GIT_CONFIG_GLOBAL": "/dev/null",
            "HOME": "/nonexistent", **(env or {})}
    return subprocess.run(["git", *args], cwd=work, env=base, check=True, capture_output=True,
                          text=True).stdout.strip()


def write(work: Path, files: dict[str, bytes | str]) -> None:
    for name, content in files.items():
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())


def commit(work: Path, files: dict, message: str) -> str:
    write(work, files)
    run(work, "add", "--all")
    run(work, "commit", "--quiet", "--allow-empty", "-m", message)
    return run(work, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> dict:
    """A bare repository with a root commit, a rename, a binary file, an XSS file name, an
    HTML commit message, a branch with slashes, a merge, tags and 120 more commits."""
    top = tmp_path_factory.mktemp("browse")
    work = top / "work"
    work.mkdir()
    run(work, "init", "--quiet", "--initial-branch=main")
    shas = {"root": commit(work, {"README.md": "# Hello\n", "src/app.py": "print('hi')\n"}, "Initial commit")}
    run(work, "mv", "README.md", "README.txt")
    shas["rename"] = commit(work, {"src/app.py": "print('hi')\nprint('there')\n"}, "Rename the README")
    shas["html"] = commit(work, {XSS_NAME: "<script>alert('file')</script>\n", "logo.bin": b"\x89PNG\0\1\2\3" * 10},
                          HTML_MESSAGE)
    run(work, "checkout", "--quiet", "-b", "release/1.0")
    shas["release"] = commit(work, {"release.txt": "1.0\n"}, "Release notes")
    run(work, "checkout", "--quiet", "main")
    shas["main_side"] = commit(work, {"main.txt": "main\n"}, "Main side")
    run(work, "merge", "--quiet", "--no-ff", "-m", "Merge release/1.0", "release/1.0")
    shas["merge"] = run(work, "rev-parse", "HEAD")
    run(work, "tag", "v-light")
    run(work, "tag", "-a", "v1.0", "-m", "Version <1.0>", shas["release"])
    run(work, "branch", "feature/x", shas["rename"])
    run(work, "tag", "feature", shas["root"])  # a tag that is a prefix of a branch name
    for i in range(120):
        commit(work, {"counter.txt": f"{i}\n"}, f"Count {i}")
    shas["tip"] = run(work, "rev-parse", "HEAD")
    bare = top / "repo.git"
    run(top, "clone", "--quiet", "--bare", str(work), str(bare))
    run(top, f"--git-dir={bare}", "symbolic-ref", "HEAD", "refs/heads/main")
    return {"path": bare, **shas}


def test_branches_default_first_and_tags_of_both_kinds(repo):
    found = browse.branches(repo["path"])
    assert [b.name for b in found][0] == "main" and found[0].default
    assert {b.name for b in found} == {"main", "release/1.0", "feature/x"}
    release = next(b for b in found if b.name == "release/1.0")
    assert release.sha == repo["release"] and release.subject == "Release notes" and not release.default
    assert browse.branches(repo["path"], default="feature/x")[0].name == "feature/x"

    tags = {t.name: t for t in browse.tags(repo["path"])}
    assert set(tags) == {"v-light", "v1.0", "feature"}
    assert tags["v1.0"].annotated and tags["v1.0"].sha == repo["release"] and tags["v1.0"].subject == "Version <1.0>"
    assert not tags["v-light"].annotated and tags["v-light"].sha == repo["merge"]


def test_revisions_resolve_by_branch_tag_and_sha(repo):
    path = repo["path"]
    assert browse.resolve_revision(path, "release/1.0") == browse.Revision("release/1.0", repo["release"], "branch")
    assert browse.resolve_revision(path, "v1.0").sha == repo["release"]  # the annotated tag peeled to its commit
    assert browse.resolve_revision(path, "v1.0").kind == "tag"
    assert browse.resolve_revision(path, repo["root"]).kind == "commit"
    assert browse.resolve_revision(path, repo["root"][:7]).sha == repo["root"]
    with pytest.raises(browse.NotInRepository):
        browse.resolve_revision(path, "nope")
    with pytest.raises(browse.NotInRepository):
        browse.resolve_revision(path, "0000000")
    for bad in ("..", "main..v1.0", "-rf", "--output=x", "a\x00b", "main@{1}", "refs/heads/main"):
        with pytest.raises(ValidationError):
            browse.resolve_revision(path, bad)


def test_revision_and_path_split_by_the_longest_existing_name(repo):
    path = repo["path"]
    revision, rest = browse.split_revision_path(path, "release/1.0/release.txt")
    assert (revision.name, revision.sha, rest) == ("release/1.0", repo["release"], "release.txt")
    revision, rest = browse.split_revision_path(path, "feature/x/src/app.py")  # not the tag "feature"
    assert (revision.name, rest) == ("feature/x", "src/app.py")
    revision, rest = browse.split_revision_path(path, "feature/README.md")  # the tag, the root commit's file
    assert (revision.kind, revision.sha, rest) == ("tag", repo["root"], "README.md")
    revision, rest = browse.split_revision_path(path, f"{repo['rename'][:10]}/src")
    assert (revision.sha, rest) == (repo["rename"], "src")
    assert browse.split_revision_path(path, "main")[1] == ""
    with pytest.raises(browse.NotInRepository):
        browse.split_revision_path(path, "ghost/src/app.py")
    for bad in ("main/../etc/passwd", "main/src/\x00", "-x/src", "../main", "main/-rf", ""):
        with pytest.raises(ValidationError):
            browse.split_revision_path(path, bad)


def test_log_pages_through_120_commits(repo):
    path, seen = repo["path"], []
    page = browse.log(path, repo["tip"], limit=50)
    assert page.commits[0].subject == "Count 119" and page.has_more
    while True:
        seen += page.commits
        if not page.has_more:
            break
        page = browse.log(path, repo["tip"], skip=page.skip + page.limit, limit=50)
    # 120 counters, the merge, both sides, the HTML commit, the rename and the root.
    assert len(seen) == 126 and len({c.sha for c in seen}) == 126
    assert seen[-1].sha == repo["root"] and seen[-1].parents == ()
    assert len(browse.log(path, repo["tip"], skip=100, limit=50).commits) == 26

    only_app = browse.log(path, repo["tip"], path="src/app.py")
    assert [c.sha for c in only_app.commits] == [repo["rename"], repo["root"]] and not only_app.has_more
    assert browse.log(path, repo["tip"], path="src/*").commits == []  # a path, never a glob


def test_commit_details_keep_html_as_text(repo):
    info = browse.commit(repo["path"], repo["html"])
    assert info.subject == "Fix <script>alert(1)</script> & more"
    assert info.body == "Body with <b>tags</b>."
    assert (info.author_name, info.author_email, info.committer_name) == ("Ada", "ada@example.test", "Cy")
    assert info.parents == (repo["rename"],)
    assert browse.commit(repo["path"], repo["merge"]).parents == (repo["main_side"], repo["release"])
    with pytest.raises(ValidationError):
        browse.commit(repo["path"], "HEAD")


def test_tree_lists_directories_first_with_sizes(repo):
    entries = browse.tree(repo["path"], repo["merge"])
    assert [e.name for e in entries][0] == "src"
    by_name = {e.name: e for e in entries}
    assert by_name[XSS_NAME].kind == "blob" and by_name["logo.bin"].size == 80
    assert [e.path for e in browse.tree(repo["path"], repo["merge"], "src")] == ["src/app.py"]
    with pytest.raises(browse.NotInRepository):
        browse.tree(repo["path"], repo["merge"], "src/app.py")  # a file, not a directory
    with pytest.raises(ValidationError):
        browse.tree(repo["path"], repo["merge"], "src/../..")


def test_submodules_and_symlinks_are_named_as_such(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    run(work, "init", "--quiet", "--initial-branch=main")
    sha = commit(work, {"a.txt": "a"}, "a")
    # A gitlink entry as a submodule adds it, without fetching anything.
    run(work, "update-index", "--add", "--cacheinfo", f"160000,{sha},vendor/lib")
    (work / "link").symlink_to("a.txt")
    run(work, "add", "link")
    run(work, "commit", "--quiet", "-m", "submodule and link")  # no "add --all": vendor/lib is not checked out
    tip = run(work, "rev-parse", "HEAD")
    kinds = {e.path: e.kind for e in browse.tree(work / ".git", tip)}
    assert kinds == {"vendor": "tree", "a.txt": "blob", "link": "symlink"}
    assert [(e.kind, e.sha) for e in browse.tree(work / ".git", tip, "vendor")] == [("submodule", sha)]


def test_blob_detects_binary_and_truncates(repo):
    text = browse.blob(repo["path"], repo["html"], XSS_NAME)
    assert text.text == "<script>alert('file')</script>\n" and not text.binary and not text.truncated
    binary = browse.blob(repo["path"], repo["html"], "logo.bin")
    assert binary.binary and binary.size == 80
    cut = browse.blob(repo["path"], repo["rename"], "src/app.py", max_bytes=5)
    assert cut.truncated and cut.data == b"print" and cut.size == len("print('hi')\nprint('there')\n")
    assert b"".join(browse.stream_blob(repo["path"], repo["html"], "logo.bin", chunk=7)) == b"\x89PNG\0\1\2\3" * 10
    with pytest.raises(browse.NotInRepository):
        browse.blob(repo["path"], repo["root"], "README.txt")  # renamed later
    with pytest.raises(browse.NotInRepository):
        browse.blob(repo["path"], repo["root"], "src")  # a directory


def test_root_commit_diffs_against_the_empty_tree(repo):
    result = browse.diff(repo["path"], repo["root"])
    assert result.base is None and not result.truncated
    assert [(f.status, f.old_path, f.new_path, f.additions, f.deletions) for f in result.files] == [
        ("added", None, "README.md", 1, 0), ("added", None, "src/app.py", 1, 0)]
    line = result.files[1].hunks[0].lines[0]
    assert (line.kind, line.old, line.new, line.text) == ("add", None, 1, "print('hi')")


def test_rename_modification_and_binary_in_a_diff(repo):
    result = browse.diff(repo["path"], repo["rename"])
    files = {f.path: f for f in result.files}
    renamed = files["README.txt"]
    assert (renamed.status, renamed.old_path, renamed.similarity) == ("renamed", "README.md", 100)
    modified = files["src/app.py"]
    assert (modified.additions, modified.deletions) == (1, 0)
    assert [(x.kind, x.old, x.new) for x in modified.hunks[0].lines] == [("context", 1, 1), ("add", None, 2)]

    files = {f.path: f for f in browse.diff(repo["path"], repo["html"]).files}
    assert files["logo.bin"].binary and files["logo.bin"].additions is None and not files["logo.bin"].hunks
    assert files[XSS_NAME].hunks[0].lines[0].text == "<script>alert('file')</script>"


def test_merge_diffs_against_its_first_parent(repo):
    result = browse.diff(repo["path"], repo["merge"])
    assert result.base == repo["main_side"]
    assert [f.path for f in result.files] == ["release.txt"]


def test_diff_caps_files_and_lines(repo):
    capped = browse.diff(repo["path"], repo["html"], max_files=1)
    assert capped.truncated and capped.total_files == 2 and len(capped.files) == 1
    short = browse.diff(repo["path"], repo["rename"], max_lines=1)
    assert short.truncated
    shown = sum(len(h.lines) for f in short.files for h in f.hunks)
    assert shown == 1 and any(f.truncated for f in short.files)
    cut = browse.diff(repo["path"], repo["rename"], max_bytes=40)
    assert cut.truncated


def test_empty_repository(tmp_path):
    bare = tmp_path / "empty.git"
    run(tmp_path, "init", "--quiet", "--bare", "--initial-branch=trunk", str(bare))
    assert browse.is_empty(bare) and browse.head_branch(bare) == "trunk"
    assert browse.branches(bare) == [] and browse.tags(bare) == []
    with pytest.raises(browse.NotInRepository):
        browse.split_revision_path(bare, "trunk")
