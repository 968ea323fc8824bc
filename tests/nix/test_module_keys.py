"""The NixOS module and the configuration reader name the same keys: one list, no drift.

`nixos-modules/settings.json` is what `prts config schema` prints, and the module makes
its typed `settings` options and its `secretFiles` options from that file alone. These
tests fail when the reader gains, loses or changes a key without the file following, and
when a module or image file names a setting or a secret that the reader does not have."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import pytest

from appliance.config import BY_KEY, SETTINGS, schema

ROOT = pathlib.Path(__file__).parents[2]
SETTINGS_JSON = ROOT / "nixos-modules" / "settings.json"
NIX_FILES = sorted(p for d in ("nixos-modules", "images") for p in (ROOT / d).rglob("*.nix"))

# `cfg.settings.web.listen`, `s.objects.backend` (backup.nix's shorthand) and
# `services.prts.settings.web.proxy_hops`: dotted references to one key.
SETTING_REFERENCE = re.compile(r"\b(?:cfg\.settings|services\.prts\.settings|\bs)\.([a-z_]+(?:\.[a-z_]+)+)")
SECRET_REFERENCE = re.compile(r'secretFiles(?:\.|\s*\.\s*)"([^"]+)"|"([a-z_.]+)"\s*=\s*"/')


def test_settings_json_is_the_readers_key_list():
    stored = json.loads(SETTINGS_JSON.read_text())
    assert stored == schema(), (
        "nixos-modules/settings.json differs from appliance/config.py SETTINGS; regenerate it with "
        "`.venv/bin/prts config schema > nixos-modules/settings.json`"
    )


def test_the_cli_prints_the_same_schema():
    printed = subprocess.run([sys.executable, "-m", "appliance", "config", "schema"],
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert json.loads(printed) == schema()


def test_every_key_has_what_the_module_needs_to_type_it():
    for entry in schema():
        assert entry["type"] in {"str", "int", "bool", "listen"}, entry
        assert entry["description"].strip(), entry["key"]
        if entry["choices"]:
            assert entry["type"] == "str" and entry["default"] in entry["choices"], entry


def _dotted_prefixes(key: str) -> set[str]:
    parts = key.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_and_image_files_name_only_real_settings(path):
    known = set().union(*(_dotted_prefixes(s.key) for s in SETTINGS if not s.secret))
    text = path.read_text()
    unknown = sorted({m for m in SETTING_REFERENCE.findall(text) if m not in known})
    assert unknown == [], f"{path.relative_to(ROOT)} names settings the reader does not have: {unknown}"
    # `secretFiles."${k.key}"` is the module walking the list itself.
    secrets = {a or b for a, b in SECRET_REFERENCE.findall(text)} - {""}
    secrets = {k for k in secrets if "${" not in k}
    not_secret = sorted(k for k in secrets if k not in BY_KEY or not BY_KEY[k].secret)
    assert not_secret == [], f"{path.relative_to(ROOT)}: secretFiles names non-secret or unknown keys: {not_secret}"
