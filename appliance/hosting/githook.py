"""git's pre-receive hook for pushes over HTTP: ``python -m appliance.hosting.githook pre-receive``.

``git http-backend`` runs ``git receive-pack``, which runs the hook scripts that
``repos.install_hooks`` placed in each repository; pre-receive execs this module when the
web process set ``PRTS_HOOK_PYTHON`` (a push through the appliance), and does nothing
otherwise (an administrator pushing on the server's file system).

It reads the ``<old> <new> <ref>`` lines and refuses the whole push when any update breaks
the rules (``refupdates.refusal``), saying why on stderr, which git shows the pusher as
``remote: ...``. The rules arrive from the web process in the environment:
``PRTS_PROTECTED_BRANCHES`` (JSON list of patterns) and ``PRTS_MAY_PUSH_PROTECTED``. The
new objects are still in git's quarantine here; ``git merge-base`` sees them through the
environment git set up, which is why it runs with this process's environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from appliance.hosting.refupdates import parse_updates, refusal


def _is_ancestor(ancestor: str, commit: str) -> bool:
    done = subprocess.run(["git", "merge-base", "--is-ancestor", ancestor, commit], capture_output=True)
    return done.returncode == 0


def pre_receive(lines: str, env: dict[str, str]) -> list[str]:
    patterns = tuple(json.loads(env.get("PRTS_PROTECTED_BRANCHES", "[]")))
    may_push_protected = env.get("PRTS_MAY_PUSH_PROTECTED") == "1"
    problems = []
    for update in parse_updates(lines):
        reason = refusal(update, patterns, may_push_protected, _is_ancestor)
        if reason:
            problems.append(f"{update.ref}: {reason}")
    return problems


def main(argv: list[str]) -> int:
    hook = argv[1] if len(argv) > 1 else ""
    lines = sys.stdin.read()
    if hook == "pre-receive":
        problems = pre_receive(lines, dict(os.environ))
        for problem in problems:
            print(f"PRTS refused the push: {problem}", file=sys.stderr)
        return 1 if problems else 0
    print(f"unknown hook {hook!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
