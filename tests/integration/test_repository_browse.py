"""appliance.hosting.browse against a real repository made with the git CLI: branches
with slashes, annotated and lightweight tags, a file named like an HTML payload, a commit
message with HTML, a binary file, a rename, a symlink, a submodule, a root commit, a
merge commit and 120 commits of history for pagination."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from appliance import repos
from appliance.errors import ValidationError
from appliance.hosting import browse

XSS_NAME = "<img src=x onerror=alert(1)>.txt"
HTML_MESSAGE = "Fix <script>alert(1)</script> & more\n\nBody with <b>tags</b>."
BINARY = bytes(range(256)) * 4
APP = "".join(f"line {i}\n" for i in range(1, 41))


def run(work: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.test",
           "GIT_COMMITTER_NAME": "Cy", "GIT_COMMITTER_EMAIL": "cy@example.test", "GIT_CONFIG_GLOBAL": "/dev/null",
           "HOME": "/nonexistent"}
    return subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(work: Path, files: dict[str, bytes | str], message: str) -> str:
    for name, content in files.items():
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    if files:  # only these: "add --all" would drop the submodule, which has no checkout here
        run(work, "add", "--", *files)
    run(work, "commit", "--quiet", "--allow-empty", "-m", message)
    return run(work, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """The repository, and the commits the tests look at by name."""
    base = tmp_path_factory.mktemp("browse")
    work = base / "work"
    run(base, "init", "--quiet", "--initial-branch=main", str(work))
    shas = {"root": commit(work, {"README.md": "# Demo\n", "src/app.py": APP, XSS_NAME: "payload\n"}, "Initial")}
    (work / "link").symlink_to("README.md")
    run(work, "add", "link")
    shas["html"] = commit(work, {"logo.bin": BINARY}, HTML_MESSAGE)
    # A gitlink without a .gitmodules checkout: how a submodule looks in a tree.
    run(work, "update-index", "--add", "--cacheinfo", f"160000,{shas['root']},vendor/lib")
    run(work, "commit", "--quiet", "-m", "Add a submodule")
    run(work, "mv", "src/app.py", "src/main.py")
    shas["rename"] = commit(work, {"src/main.py": APP.replace("line 40\n", "line forty\n")},
                            "Rename app.py to main.py")
    for i in range(120):
        run(work, "commit", "--quiet", "--allow-empty", "-m", f"Step {i}")
    run(work, "tag", "release", shas["root"])  # a tag that is a prefix of a branch name
    run(work, "checkout", "--quiet", "-b", "release/1.0")
    shas["release"] = commit(work, {"CHANGES": "1.0\n"}, "Release notes")
    run(work, "tag", "-a", "v1.0", "-m", "Version 1.0 <b>final</b>")
    run(work, "checkout", "--quiet", "main")
    shas["main_tip"] = commit(work, {"src/main.py": APP.replace("line 1\n", "line one\n")}, "Change main")
    run(work, "merge", "--quiet", "--no-ff", "-m", "Merge release/1.0", "release/1.0")
    shas["merge"] = run(work, "rev-parse", "HEAD")
    repo = base / "repo.git"
    run(base, "clone", "--quiet", "--bare", str(work), str(repo))
    return repo, shas


def test_branches_put_the_default_first_and_name_their_last_commit(history):
    repo, shas = history
    found = browse.branches(repo)
    assert [b.name for b in found] == ["main", "release/1.0"]
    assert found[0].is_default and not found[1].is_default
    assert (found[0].sha, found[0].subject) == (shas["merge"], "Merge release/1.0")
    assert (found[1].sha, found[1].subject) == (shas["release"], "Release notes")
    assert found[0].date.tzinfo is not None


def test_tags_are_annotated_or_lightweight_and_point_at_commits(history):
    repo, shas = history
    found = {t.name: t for t in browse.tags(repo)}
    assert set(found) == {"release", "v1.0"}
    assert found["v1.0"].annotated and found["v1.0"].sha == shas["release"]
    assert found["v1.0"].subject == "Version 1.0 <b>final</b>"
    assert not found["release"].annotated and found["release"].sha == shas["root"]
    assert found["release"].subject == "Initial"


def test_revisions_resolve_from_branches_tags_and_full_or_short_ids(history):
    repo, shas = history
    assert browse.resolve_revision(repo, "release/1.0") == shas["release"]
    assert browse.resolve_revision(repo, "v1.0") == shas["release"]
    assert browse.resolve_revision(repo, shas["html"]) == shas["html"]
    assert browse.resolve_revision(repo, shas["html"][:7]) == shas["html"]
    with pytest.raises(repos.UnknownRef, match="no branch, tag or commit named 'nope'"):
        browse.resolve_revision(repo, "nope")
    with pytest.raises(repos.UnknownRef):
        browse.resolve_revision(repo, "0000000")
    for bad in ("main..v1.0", "-rf", "a\x00b", "HEAD@{1}", "main~1"):
        with pytest.raises(ValidationError):
            browse.resolve_revision(repo, bad)


def test_a_url_path_splits_at_the_longest_branch_or_tag(history):
    repo, shas = history
    # "release" is a tag and "release/1.0" a branch: the longer name wins.
    assert browse.locate(repo, "release/1.0/CHANGES") == browse.Location("release/1.0", shas["release"], "CHANGES")
    assert browse.locate(repo, "release/README.md") == browse.Location("release", shas["root"], "README.md")
    assert browse.locate(repo, "main") == browse.Location("main", shas["merge"], "")
    assert browse.locate(repo, f"{shas['root'][:10]}/src/app.py") == \
        browse.Location(shas["root"][:10], shas["root"], "src/app.py")
    with pytest.raises(repos.UnknownRef):
        browse.locate(repo, "nobranch/file")
    for bad in ("main/../etc/passwd", "../main", "main/a\x00b", "-rf/x", "main//x", "main/./x"):
        with pytest.raises(ValidationError):
            browse.locate(repo, bad)


def test_the_log_pages_through_history_and_says_when_more_remain(history):
    repo, shas = history
    first = browse.log(repo, "main", limit=50)
    assert len(first.commits) == 50 and first.has_more
    assert [c.sha for c in first.commits[:2]] == [shas["merge"], shas["main_tip"]]
    seen = [c.sha for c in first.commits]
    skip = 50
    while True:
        page = browse.log(repo, "main", skip=skip, limit=50)
        seen += [c.sha for c in page.commits]
        skip += 50
        if not page.has_more:
            break
    # 4 before the steps, 120 steps, the tip, release notes and the merge.
    assert len(seen) == len(set(seen)) == 127
    assert seen[-1] == shas["root"]
    assert browse.log(repo, "main", skip=127).commits == []
    touching = browse.log(repo, "main", path="src/main.py")
    assert [c.sha for c in touching.commits] == [shas["main_tip"], shas["rename"]] and not touching.has_more


def test_a_commit_carries_parents_people_dates_and_its_whole_message(history):
    repo, shas = history
    c = browse.commit(repo, shas["html"])
    assert c.message == HTML_MESSAGE and c.subject == "Fix <script>alert(1)</script> & more"
    assert c.body == "Body with <b>tags</b>."
    assert c.parents == (shas["root"],)
    assert (c.author_name, c.author_email, c.committer_name, c.committer_email) == \
        ("Ada", "ada@example.test", "Cy", "cy@example.test")
    assert browse.commit(repo, shas["root"]).parents == ()
    assert browse.commit(repo, shas["merge"]).parents == (shas["main_tip"], shas["release"])


def test_a_tree_lists_directories_first_with_sizes_symlinks_and_submodules(history):
    repo, shas = history
    entries = browse.tree(repo, "main")
    assert [(e.name, e.kind) for e in entries] == [
        ("src", "tree"), ("vendor", "tree"), (XSS_NAME, "blob"), ("CHANGES", "blob"), ("README.md", "blob"),
        ("link", "symlink"), ("logo.bin", "blob")]  # by bytes, as git sorts: '<' before 'C' before 'l'
    sizes = {e.name: e.size for e in entries}
    assert sizes["logo.bin"] == len(BINARY) and sizes["src"] is None
    (sub,) = browse.tree(repo, "main", "vendor")
    assert (sub.kind, sub.path, sub.sha) == ("submodule", "vendor/lib", shas["root"])
    assert [e.path for e in browse.tree(repo, shas["root"], "src")] == ["src/app.py"]
    with pytest.raises(browse.NotADirectory):
        browse.tree(repo, "main", "README.md")
    with pytest.raises(browse.NotADirectory):
        browse.tree(repo, "main", "missing")
    with pytest.raises(ValidationError):
        browse.tree(repo, "main", "src/../..")


def test_files_are_read_with_binary_detection_and_a_size_cap(history):
    repo, shas = history
    readme = browse.blob(repo, "main", "README.md")
    assert (readme.text, readme.binary, readme.truncated) == ("# Demo\n", False, False)
    assert browse.blob(repo, "main", XSS_NAME).text == "payload\n"
    logo = browse.blob(repo, "main", "logo.bin")
    assert logo.binary and logo.data == BINARY
    big = browse.blob(repo, "main", "src/main.py", max_bytes=10)
    assert big.truncated and big.data == b"" and big.size == len(APP.replace("line 1\n", "line one\n")) \
        and not big.binary
    assert browse.blob(repo, "main", "logo.bin", max_bytes=10).binary
    assert browse.blob(repo, "main", "link").text == "README.md"  # a symlink's blob is its target
    for path in ("src", "vendor/lib", "missing.txt"):
        with pytest.raises(browse.NotAFile):
            browse.blob(repo, "main", path)
    for bad in ("-x", "/etc/passwd", "a/../b", "a\nb"):
        with pytest.raises(ValidationError):
            browse.blob(repo, "main", bad)
    size, chunks = browse.stream_blob(repo, "main", "logo.bin", chunk=100)
    assert size == len(BINARY) and b"".join(chunks) == BINARY
    assert [browse.blob_kind(repo, "main", p) for p in ("", "src", "vendor/lib", "link", "README.md", "nope")] == \
        ["tree", "tree", "submodule", "symlink", "blob", None]


def test_a_root_commit_diffs_against_the_empty_tree(history):
    repo, shas = history
    d = browse.diff(repo, shas["root"])
    assert d.base is None and not d.truncated
    assert {(f.status, f.new_path, f.additions) for f in d.files} == {
        ("A", "README.md", 1), ("A", "src/app.py", 40), ("A", XSS_NAME, 1)}
    app = next(f for f in d.files if f.new_path == "src/app.py")
    (hunk,) = app.hunks
    assert hunk.header == "@@ -0,0 +1,40 @@"
    assert hunk.lines[0] == browse.DiffLine("+", None, 1, "line 1")
    assert hunk.lines[-1] == browse.DiffLine("+", None, 40, "line 40")


def test_renames_binary_files_and_line_numbers(history):
    repo, shas = history
    (renamed,) = browse.diff(repo, shas["rename"]).files
    assert (renamed.status, renamed.old_path, renamed.new_path) == ("R", "src/app.py", "src/main.py")
    assert (renamed.additions, renamed.deletions) == (1, 1)
    lines = [l for h in renamed.hunks for l in h.lines]
    assert browse.DiffLine("-", 40, None, "line 40") in lines
    assert browse.DiffLine("+", None, 40, "line forty") in lines
    assert browse.DiffLine(" ", 39, 39, "line 39") in lines
    link, logo = browse.diff(repo, shas["html"]).files
    assert (link.status, link.new_path, link.hunks[0].lines) == ("A", "link", [
        browse.DiffLine("+", None, 1, "README.md"), browse.DiffLine("\\", None, None, "No newline at end of file")])
    assert (logo.status, logo.new_path, logo.binary, logo.hunks) == ("A", "logo.bin", True, [])


def test_a_merge_commit_shows_what_it_brought_in_against_its_first_parent(history):
    repo, shas = history
    d = browse.diff(repo, shas["merge"])
    assert d.base == shas["main_tip"]
    assert [(f.status, f.path) for f in d.files] == [("A", "CHANGES")]


def test_caps_on_files_and_lines_mark_the_diff_truncated(history):
    repo, shas = history
    few = browse.diff(repo, shas["root"], max_files=1)
    assert few.truncated and few.total_files == 3 and len(few.files) == 1
    short = browse.diff(repo, shas["root"], max_lines=5)
    assert short.truncated
    cut = {f.path: f for f in short.files}
    assert cut["src/app.py"].truncated and cut["src/app.py"].hunks == []
    assert not cut["README.md"].truncated and cut["README.md"].hunks
    tiny = browse.diff(repo, shas["root"], max_bytes=200)
    assert tiny.truncated and any(f.truncated for f in tiny.files)


def test_an_empty_repository_is_empty(tmp_path):
    repo = tmp_path / "empty.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(repo)], check=True)
    assert browse.is_empty(repo) and browse.branches(repo) == [] and browse.tags(repo) == []
    assert browse.is_empty(tmp_path / "missing.git")


def test_paths_are_names_never_globs_or_pathspec_magic(tmp_path):
    work = tmp_path / "work"
    run(tmp_path, "init", "--quiet", "--initial-branch=main", str(work))
    plain = commit(work, {"a.txt": "a\n"}, "Add a.txt")
    star = commit(work, {"*.txt": "star\n"}, "Add a file named *.txt")
    repo = tmp_path / "repo.git"
    run(tmp_path, "clone", "--quiet", "--bare", str(work), str(repo))
    assert [c.sha for c in browse.log(repo, "main", path="*.txt").commits] == [star]
    assert [c.sha for c in browse.log(repo, "main", path="a.txt").commits] == [plain]
    assert browse.log(repo, "main", path=":(exclude)a.txt").commits == []
    assert browse.blob_kind(repo, "main", "*.txt") == "blob"
    assert browse.blob_kind(repo, "main", "?.txt") is None
    assert browse.blob(repo, "main", "*.txt").text == "star\n"
