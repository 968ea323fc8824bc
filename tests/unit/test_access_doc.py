"""docs/access.md lists every action of ``policy.ACTIONS`` with exactly the roles that may do it."""

from __future__ import annotations

import re
from pathlib import Path

from appliance.accounts.policy import ACTIONS
from appliance.models import Role

DOC = Path(__file__).resolve().parents[2] / "docs" / "access.md"


def documented_roles() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"^\| `([a-z_.]+)` \|[^|]*\|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_every_action_is_documented_with_its_roles():
    rows = documented_roles()
    assert sorted(rows) == sorted(ACTIONS), "docs/access.md and policy.ACTIONS list different actions"
    for action, least in ACTIONS.items():
        expected = ["yes" if role >= least else "—" for role in Role]
        assert rows[action] == expected, f"{action}: the doc says {rows[action]}, the policy {expected}"
