"""The Nix files parse, point at files that exist, and the flake offers what issue 7 asks.

Full nixpkgs is not on this machine, so nothing here builds: every ``*.nix`` of the
repository goes through ``nix-instantiate --parse``; the flake's ``outputs`` function is
evaluated with a nixpkgs whose every attribute throws, which proves the output names do
not depend on nixpkgs and lets them be listed; and nixos-modules/package.nix is evaluated
with stand-ins that return names, so its dependency list is held against pyproject.toml.
None of this needs PRTS_NIXPKGS_LIB.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ["aarch64-linux", "x86_64-linux"]


def nix_files() -> list[str]:
    # Tracked files and new ones not ignored yet, so a file is checked before `git add`.
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*.nix"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    return sorted({name for name in listed if (ROOT / name).is_file()})


def nix(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("nix-instantiate")
    if binary is None:
        pytest.fail("nix-instantiate is not installed (Debian package nix-bin; `make test` installs it)")
    return subprocess.run([binary, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def evaluate(expression: str):
    done = nix("--eval", "--strict", "--json", "-E", expression)
    assert done.returncode == 0, f"nix-instantiate could not evaluate:\n{expression}\n{done.stderr}"
    return json.loads(done.stdout)


def parsed(name: str) -> str:
    done = nix("--parse", name)
    assert done.returncode == 0, f"{name} does not parse:\n{done.stderr.strip()}"
    return done.stdout


def test_the_repository_has_the_nix_files_of_the_appliance():
    expected = {"flake.nix", "nixos-modules/package.nix", "images/appliance.nix", "images/vm.nix",
                "images/iso.nix", "images/oci.nix", "tests/nix/vm-test.nix"}
    assert expected <= set(nix_files())


@pytest.mark.parametrize("name", nix_files())
def test_nix_file_parses(name):
    parsed(name)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


@pytest.mark.parametrize("name", nix_files())
def test_paths_a_nix_file_names_exist(name):
    # --parse prints each relative path literal (./images/vm.nix) resolved to an absolute
    # path; string literals are dropped first so that "/var/lib/..." is not taken for one.
    code = _STRING.sub('""', parsed(name))
    named = set(re.findall(re.escape(str(ROOT)) + r"/[A-Za-z0-9._+\-/]*", code))
    missing = sorted(p for p in named if not Path(p).exists())
    assert not missing, f"{name} names paths that do not exist: {missing}"


# A nixpkgs input whose every use fails: what evaluates against it does not use it.
FLAKE = """
let
  flake = import ./flake.nix;
  unusable = what: throw "the flake's output names must not need nixpkgs (used: ${what})";
  nixpkgs = { lib = unusable "lib"; legacyPackages = unusable "legacyPackages"; outPath = unusable "outPath"; };
  outputs = flake.outputs { self = outputs // { outPath = toString ./.; }; inherit nixpkgs; };
  perSystem = name: builtins.mapAttrs (system: value: builtins.attrNames value) outputs.${name};
in {
  inputs = flake.inputs;
  arguments = builtins.attrNames (builtins.functionArgs flake.outputs);
  outputs = builtins.attrNames outputs;
  packages = perSystem "packages";
  apps = perSystem "apps";
  devShells = perSystem "devShells";
  checks = perSystem "checks";
  formatter = builtins.attrNames outputs.formatter;
  nixosModules = builtins.mapAttrs (name: path: toString path) outputs.nixosModules;
  overlay = builtins.isFunction outputs.overlays.default;
  overlays = builtins.attrNames outputs.overlays;
  nixosConfigurations = builtins.attrNames outputs.nixosConfigurations;
}
"""


@pytest.fixture(scope="module")
def flake():
    return evaluate(FLAKE)


def test_flake_has_every_output_the_issue_names(flake):
    assert set(flake["outputs"]) >= {"packages", "overlays", "nixosModules", "nixosConfigurations", "apps",
                                     "devShells", "checks", "formatter"}
    assert flake["arguments"] == ["nixpkgs", "self"]
    assert flake["inputs"]["nixpkgs"]["url"].startswith("github:NixOS/nixpkgs/")


def test_flake_builds_for_both_linux_systems(flake):
    for output in ("packages", "apps", "devShells", "checks"):
        assert sorted(flake[output]) == SYSTEMS, output
    assert sorted(flake["formatter"]) == SYSTEMS
    for system in SYSTEMS:
        assert set(flake["packages"][system]) == {"prts", "default", "vm", "iso", "oci-web", "oci-worker"}
        assert flake["apps"][system] == ["default"]
        assert flake["devShells"][system] == ["default"]
        # The Python suite and the VM test once per database.
        assert set(flake["checks"][system]) == {"pytest", "vm-postgresql", "vm-sqlite"}


def test_flake_exports_the_module_directory_and_the_overlay(flake):
    assert flake["nixosModules"] == {"prts": str(ROOT / "nixos-modules"), "default": str(ROOT / "nixos-modules")}
    assert flake["overlays"] == ["default"] and flake["overlay"] is True
    assert flake["nixosConfigurations"] == ["appliance"]


# package.nix evaluated with stand-ins: each nixpkgs Python package is its own name, a
# build function returns what it was given (buildPythonPackage: the pname), and lib is
# only importTOML. A name that is not a stand-in (a package pyproject.toml does not
# list) fails the evaluation with "undefined variable".
PACKAGE = """
let
  pyproject = builtins.fromTOML (builtins.readFile ./pyproject.toml);
  names = builtins.fromJSON %(names)s;
  python3Packages = builtins.listToAttrs (map (n: { name = n; value = n; }) names) // {
    python = { sitePackages = "lib/python3/site-packages"; };
    buildPythonApplication = args: args;
    buildPythonPackage = args: args.pname;
    makePythonPath = ps: "";
  };
  package = import ./nixos-modules/package.nix {
    lib = { importTOML = path: builtins.fromTOML (builtins.readFile path); };
    inherit python3Packages;
    stdenv = throw "stdenv"; fetchurl = throw "fetchurl"; autoPatchelfHook = throw "autoPatchelfHook";
    unzip = throw "unzip"; git = throw "git";
  };
in {
  inherit (package) pname version pyproject;
  dependencies = package.passthru.pythonDependencies;
  build-system = package.build-system;
  mainProgram = package.meta.mainProgram;
}
"""


def requirement_name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[._]+", "-", name).lower()


def test_the_package_depends_on_exactly_what_pyproject_lists():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = sorted(requirement_name(r) for r in project["project"]["dependencies"])
    build = sorted(requirement_name(r) for r in project["build-system"]["requires"])
    names = json.dumps(sorted(set(wanted) | set(build)))
    package = evaluate(PACKAGE % {"names": json.dumps(names)})
    assert sorted(package["dependencies"]) == wanted
    assert sorted(package["build-system"]) == build
    assert package["pname"] == project["project"]["name"] and package["version"] == project["project"]["version"]
    assert package["pyproject"] is True and package["mainProgram"] == "prts"
