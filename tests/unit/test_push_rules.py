"""The rules the pre-receive hook applies to each pushed ref, and the hook's own parsing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from appliance.hosting.githook import pre_receive
from appliance.hosting.refupdates import ZERO, RefUpdate, is_protected, parse_updates, refusal

A, B = "a" * 40, "b" * 40


def never_ancestor(_old: str, _new: str) -> bool:
    return False


def always_ancestor(_old: str, _new: str) -> bool:
    return True


@pytest.mark.parametrize("ref, reason", [
    ("refs/heads/feature", ""),
    ("refs/tags/v1.0", ""),
    ("refs/heads/a..b", "not a valid ref name"),
    ("refs/heads/-rf", "not a valid ref name"),  # shown as "-rf" it would read as an option
    ("-refs/heads/x", "not a valid ref name"),
    ("refs/heads/x\x01y", "not a valid ref name"),
    ("refs/heads/x y", "not a valid ref name"),
    ("refs/pipelines/1", "only branches"),
    ("refs/notes/commits", "only branches"),
    ("HEAD", "only branches"),
])
def test_ref_names(ref, reason):
    assert reason in refusal(RefUpdate(A, B, ref), (), True, always_ancestor)
    assert bool(refusal(RefUpdate(A, B, ref), (), True, always_ancestor)) == bool(reason)


def test_protected_branches():
    patterns = ("main", "release/*")
    assert is_protected(patterns, "release/1.0") and not is_protected(patterns, "release/1.0/hotfix")
    assert not is_protected(patterns, "mainline") and not is_protected(patterns, "")
    update = RefUpdate(A, B, "refs/heads/main")
    assert "only Maintainers" in refusal(update, patterns, False, always_ancestor)
    assert refusal(update, patterns, True, always_ancestor) == ""
    assert "force-pushes are refused" in refusal(update, patterns, True, never_ancestor)
    assert "cannot be deleted" in refusal(RefUpdate(A, ZERO, "refs/heads/main"), patterns, True, always_ancestor)
    # Creating a protected branch is no force-push: there was nothing to rewrite.
    assert refusal(RefUpdate(ZERO, B, "refs/heads/release/2"), patterns, True, never_ancestor) == ""
    # Branches outside the patterns take anything, force-pushes and deletions included.
    assert refusal(RefUpdate(A, ZERO, "refs/heads/topic"), patterns, False, never_ancestor) == ""


def test_parse_updates_ignores_what_is_not_an_update():
    text = f"{A} {B} refs/heads/main\n{ZERO} {B} refs/tags/v1\nnonsense\n{A} xyz refs/heads/x\n"
    assert parse_updates(text) == [RefUpdate(A, B, "refs/heads/main"), RefUpdate(ZERO, B, "refs/tags/v1")]


def test_pre_receive_reads_its_rules_from_the_environment():
    env = {"PRTS_PROTECTED_BRANCHES": json.dumps(["main"]), "PRTS_MAY_PUSH_PROTECTED": "0"}
    assert pre_receive(f"{A} {B} refs/heads/main\n{A} {B} refs/heads/ok\n", env) == [
        "refs/heads/main: branch 'main' is protected: only Maintainers may push to it"]


def test_the_hook_does_nothing_outside_the_appliance(tmp_path):
    """A push on the server's file system (no PRTS_HOOK_PYTHON) is not checked or recorded."""
    from appliance import repos
    from conftest import make_config

    config = make_config(tmp_path / "data")
    repo = repos.ensure_repository(config, 1)
    hook = repo / "hooks" / "pre-receive"
    done = subprocess.run([str(hook)], input=f"{A} {B} refs/pipelines/1\n", text=True, capture_output=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0
    done = subprocess.run([str(hook)], input=f"{A} {B} refs/pipelines/1\n", text=True, capture_output=True,
                          env={"PATH": "/usr/bin:/bin", "PRTS_HOOK_PYTHON": sys.executable})
    assert done.returncode == 1 and "only branches" in done.stderr
