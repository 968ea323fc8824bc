"""Ref updates and the rules a push must pass: light enough for git's hooks to import.

The pre-receive hook runs as a child of ``git receive-pack`` for every push, so this module
imports nothing heavier than the ref checks and the glob matcher (no SQLAlchemy, no models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from appliance.errors import ValidationError
from appliance.pipelines import globs
from appliance.repos import check_ref, is_sha

ZERO = "0" * 40


@dataclass(frozen=True)
class RefUpdate:
    old: str  # ZERO when the ref was created
    new: str  # ZERO when the ref was deleted
    ref: str  # full ref name

    @property
    def created(self) -> bool:
        return self.old == ZERO

    @property
    def deleted(self) -> bool:
        return self.new == ZERO

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else ""

    @property
    def tag(self) -> str:
        return self.ref.removeprefix("refs/tags/") if self.ref.startswith("refs/tags/") else ""


def parse_updates(text: str) -> list[RefUpdate]:
    """The ``<old> <new> <ref>`` lines git gives pre- and post-receive hooks."""
    updates = []
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and all(is_sha(p) for p in parts[:2]):
            updates.append(RefUpdate(*parts))
    return updates


def is_protected(patterns: Iterable[str], branch: str) -> bool:
    return bool(branch) and globs.match_any(tuple(patterns), branch)


def refusal(update: RefUpdate, patterns: tuple[str, ...], may_push_protected: bool,
            is_ancestor: Callable[[str, str], bool]) -> str:
    """Why ``update`` is refused, or "" when it may go ahead."""
    try:
        check_ref(update.ref)
    except ValidationError as exc:
        return exc.message
    if not (update.branch or update.tag):
        return "only branches (refs/heads/...) and tags (refs/tags/...) may be pushed"
    if not is_protected(patterns, update.branch):
        return ""
    if not may_push_protected:
        return f"branch {update.branch!r} is protected: only Maintainers may push to it"
    if update.deleted:
        return f"branch {update.branch!r} is protected and cannot be deleted"
    if not update.created and not is_ancestor(update.old, update.new):
        return f"branch {update.branch!r} is protected: force-pushes are refused"
    return ""


