"""nixosModules.prts evaluated with nixpkgs' `lib.evalModules` (tests/nix/eval.nix).

The NixOS options the module sets (systemd, users, services.postgresql, ...) are small
stand-in declarations and packages are stand-ins too, because full nixpkgs cannot be
fetched on this machine; nixpkgs' real `lib` does the evaluation. Runs where
PRTS_NIXPKGS_LIB points at a checkout of nixpkgs' lib (the nix-community/nixpkgs.lib
repository), which CI cannot download: docs/nixos.md says how to run it.

Checked: the generated units (hardening, migrations before the web server, workers
stopping on SIGINT and partOf the web unit, credentials), the backends each option
creates, the TOML written, that the module's options are exactly the reader's keys,
and that every assertion fires on its bad combination."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from appliance.config import SETTINGS

ROOT = pathlib.Path(__file__).parents[2]
LIB = os.environ.get("PRTS_NIXPKGS_LIB", "")

pytestmark = pytest.mark.skipif(
    not LIB, reason="PRTS_NIXPKGS_LIB is not set (nixpkgs' lib cannot be downloaded in CI; see docs/nixos.md)"
)

HARDENING = {
    "ProtectSystem": "strict",
    "PrivateTmp": True,
    "NoNewPrivileges": True,
    "CapabilityBoundingSet": "",
    "ProtectHome": True,
    "UMask": "0027",
    "StateDirectory": "prts",
}


class EvalError(Exception):
    pass


def evaluate(configuration: str) -> dict:
    """The summary eval.nix returns for `configuration` (a Nix attribute set)."""
    lib_path = pathlib.Path(LIB) / "lib" if (pathlib.Path(LIB) / "lib" / "default.nix").exists() else pathlib.Path(LIB)
    expression = (
        f"import {ROOT / 'tests/nix/eval.nix'} {{ libPath = {lib_path}; "
        f"configuration = {{ imports = [ {{ services.prts.enable = true; }} ({configuration}) ]; }}; }}"
    )
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expression],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise EvalError(result.stderr)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def default():
    return evaluate("{ }")


def test_the_default_configuration_passes_its_assertions(default):
    assert default["failedAssertions"] == []


def test_module_options_are_exactly_the_readers_keys(default):
    assert sorted(default["settingsOptions"]) == sorted(s.key for s in SETTINGS if not s.secret)
    assert sorted(default["secretFileOptions"]) == sorted(s.key for s in SETTINGS if s.secret)


def test_web_and_worker_units_share_the_hardening(default):
    web, worker = default["units"]["prts-web"], default["units"]["prts-worker-1"]
    for unit in (web, worker):
        assert {k: unit["serviceConfig"].get(k) for k in HARDENING} == HARDENING
        assert "@system-service" in unit["serviceConfig"]["SystemCallFilter"]
        assert set(unit["serviceConfig"]["RestrictAddressFamilies"]) >= {"AF_UNIX", "AF_INET", "AF_INET6"}
        assert unit["serviceConfig"]["User"] == "prts"
    assert web["serviceConfig"]["ExecStart"].endswith("/bin/prts web")
    assert worker["serviceConfig"]["ExecStart"].endswith("/bin/prts worker")


def test_workers_stop_gracefully_and_follow_the_web_unit(default):
    worker = default["units"]["prts-worker-1"]
    assert worker["serviceConfig"]["KillSignal"] == "SIGINT"
    assert "prts-web.service" in worker["partOf"] and "prts-web.service" in worker["after"]
    # bubblewrap (on by default) mounts inside the job's namespaces.
    assert "@mount" in worker["serviceConfig"]["SystemCallFilter"]
    assert "bubblewrap" in worker["path"]
    assert default["configFile"]["pipelines"]["local"]["isolation"] == "bubblewrap"


def test_migrations_run_before_the_web_server_only_when_the_package_changed(default):
    pre_start = default["units"]["prts-web"]["preStart"]
    assert "prts migrate" in pre_start
    assert ".migrated-package" in pre_start and "-prts-0.1.0" in pre_start
    assert default["units"]["prts-worker-1"]["preStart"] is None


def test_local_postgresql_and_redis_are_created_with_no_password(default):
    assert default["postgresql"]["enable"] and default["postgresql"]["ensureDatabases"] == ["prts"]
    assert default["postgresql"]["ensureUsers"] == [{"name": "prts", "ensureDBOwnership": True}]
    env = default["units"]["prts-web"]["environment"]
    assert env["PRTS_DATABASE_URL"] == "postgresql://prts@/prts?host=/run/postgresql"
    assert env["PRTS_QUEUE_URL"] == env["PRTS_PUBSUB_URL"] == "unix:///run/redis-prts/redis.sock"
    assert default["redis"]["prts"]["port"] == 0
    assert "redis-prts" in default["users"]["prts"]["extraGroups"]
    assert {"postgresql.service", "redis-prts.service"} <= set(default["units"]["prts-web"]["requires"])
    assert default["configFile"]["queue"]["backend"] == "redis"
    assert default["configFile"]["data_dir"] == "/var/lib/prts"


def test_embedded_backends_when_nothing_is_created_locally():
    out = evaluate("{ services.prts.database.createLocally = false; services.prts.redis.createLocally = false; }")
    assert out["failedAssertions"] == []
    assert not out["postgresql"]["enable"] and out["redis"] == {}
    assert "PRTS_DATABASE_URL" not in out["units"]["prts-web"]["environment"]
    assert out["configFile"]["queue"]["backend"] == "sqlite"
    assert out["configFile"]["pubsub"]["backend"] == "memory"


def test_secrets_are_credentials_never_in_the_config_file():
    out = evaluate("""{ services.prts.secretFiles = {
        "secrets.key" = "/run/keys/prts-secrets-key";
        "auth.ldap.bind_password" = "/run/keys/ldap";
      }; }""")
    assert out["failedAssertions"] == []
    web = out["units"]["prts-web"]["serviceConfig"]
    assert sorted(web["LoadCredential"]) == ["auth-ldap-bind-password:/run/keys/ldap",
                                             "secrets-key:/run/keys/prts-secrets-key"]
    assert out["units"]["prts-worker-1"]["serviceConfig"]["LoadCredential"] == web["LoadCredential"]
    script = out["scripts"]["withCredentials"]
    assert 'export PRTS_SECRETS_KEY_FILE="$CREDENTIALS_DIRECTORY/secrets-key"' in script
    assert 'export PRTS_AUTH_LDAP_BIND_PASSWORD_FILE="$CREDENTIALS_DIRECTORY/auth-ldap-bind-password"' in script
    assert "/run/keys/ldap" not in json.dumps(out["configFile"])
    assert "--property=LoadCredential=secrets-key:/run/keys/prts-secrets-key" in out["scripts"]["manage"]


def test_a_full_appliance_evaluates_without_complaint():
    out = evaluate("""{
      services.prts = {
        worker.instances = 3;
        objectStore.createLocally = true;
        clickhouse.createLocally = true;
        nginx = { enable = true; virtualHost = "prts.example.org"; acme = true; };
        openFirewall = true;
        backup = { enable = true; keep = 3; };
      };
    }""")
    assert out["failedAssertions"] == []
    assert {f"prts-worker-{i}" for i in (1, 2, 3)} <= set(out["units"])
    assert "prts-worker-4" not in out["units"]
    assert out["minio"]["enable"] and out["minio"]["listenAddress"] == "127.0.0.1:9010"
    assert out["configFile"]["objects"] | {} == {**out["configFile"]["objects"], "backend": "s3",
                                                 "endpoint": "127.0.0.1:9010", "secure": False}
    assert any(c.startswith("objects-secret-key:/var/lib/prts-credentials/")
               for c in out["units"]["prts-web"]["serviceConfig"]["LoadCredential"])
    assert {"minio.service", "prts-minio-credentials.service", "clickhouse.service"} <= \
        set(out["units"]["prts-web"]["requires"])
    assert out["clickhouse"] and out["configFile"]["analytics"]["backend"] == "clickhouse"
    vhost = out["nginx"]["virtualHosts"]["prts.example.org"]
    assert vhost["enableACME"] and vhost["forceSSL"]
    assert vhost["locations"]["/"]["proxyPass"] == "http://127.0.0.1:8080"
    assert "proxy_buffering off" in vhost["locations"]["/"]["extraConfig"]
    assert out["configFile"]["web"]["proxy_hops"] == 1
    assert out["configFile"]["web"]["public_url"] == "https://prts.example.org"
    assert sorted(out["firewall"]) == [80, 443]
    assert out["timers"]["prts-backup"]["timerConfig"]["OnCalendar"] == "daily"
    backup = out["units"]["prts-backup"]["serviceConfig"]
    assert "/var/backup/prts" in backup["ReadWritePaths"] and backup["ProtectSystem"] == "strict"


def test_the_appliance_configuration_passes_and_makes_its_keys_first():
    out = evaluate(f"{{ imports = [ {ROOT / 'images/appliance.nix'} ]; }}")
    assert out["failedAssertions"] == []
    secrets = out["units"]["prts-appliance-secrets"]
    assert {"prts-web.service", "prts-worker-1.service"} <= set(secrets["before"]) & set(secrets["requiredBy"])
    assert sorted(out["units"]["prts-web"]["serviceConfig"]["LoadCredential"]) == [
        "secrets-key:/var/lib/prts-secrets/secrets-key", "web-secret-key:/var/lib/prts-secrets/web-secret-key"]
    assert "prts-web.service" in out["units"]["prts-appliance-admin"]["after"]
    assert out["postgresql"]["enable"] and out["configFile"]["web"]["proxy_hops"] == 1


def test_settings_are_typed_from_the_readers_list():
    with pytest.raises(EvalError, match="integer, at least 1"):
        evaluate("{ services.prts.settings.web.workers = 0; }")
    with pytest.raises(EvalError, match="one of"):
        evaluate('{ services.prts.settings.queue.backend = "kafka"; }')
    with pytest.raises(EvalError, match="secretFiles.web.listen' does not exist|does not exist"):
        evaluate('{ services.prts.secretFiles."web.listen" = "/run/keys/x"; }')
    with pytest.raises(EvalError, match="not in the Nix store"):
        evaluate('{ services.prts.secretFiles."secrets.key" = "/nix/store/0c0wsm28xhnfcjcqjicyp83lm6shh8a1-key"; }')
    # Keys the reader does not know pass through (it warns about them at start).
    assert evaluate('{ services.prts.settings.future.key = "x"; }')["configFile"]["future"] == {"key": "x"}


BAD_COMBINATIONS = {
    "secret in settings": (
        '{ services.prts.settings.web.secret_key = "hunter2"; }',
        'use services.prts.secretFiles."web.secret_key"'),
    "two databases": (
        '{ services.prts.secretFiles."database.url" = "/run/keys/db"; }',
        "both choose the database"),
    "two redis": (
        '{ services.prts.secretFiles."queue.url" = "/run/keys/redis"; }',
        "both choose the Redis"),
    "minio keys given": (
        '{ services.prts.objectStore.createLocally = true; services.prts.secretFiles."objects.access_key" = "/run/k"; }',
        "generates the MinIO credentials itself"),
    "s3 without endpoint": (
        '{ services.prts.settings.objects.backend = "s3"; }',
        'settings.objects.backend = "s3" needs settings.objects.endpoint'),
    "clickhouse without host": (
        '{ services.prts.settings.analytics.backend = "clickhouse"; }',
        'settings.analytics.backend = "clickhouse" needs settings.analytics.host'),
    "two clickhouses": (
        '{ services.prts.clickhouse.createLocally = true; services.prts.settings.analytics.host = "ch.example.org"; }',
        "choose one"),
    "minio on clickhouse's port": (
        '{ services.prts.objectStore = { createLocally = true; address = "127.0.0.1:9000"; };'
        ' services.prts.clickhouse.createLocally = true; }',
        "port 9000 is ClickHouse's native port"),
    "firewall for loopback": (
        "{ services.prts.openFirewall = true; }",
        "only listens on loopback"),
    "acme without nginx": (
        "{ services.prts.nginx.acme = true; }",
        "nginx.acme needs services.prts.nginx.enable"),
    "acme without a dns name": (
        '{ services.prts.nginx = { enable = true; acme = true; virtualHost = "localhost"; }; }',
        "needs a public DNS name"),
    "bubblewrap isolation without bubblewrap": (
        '{ services.prts.executors.local.bubblewrap = false;'
        ' services.prts.settings.pipelines.local.isolation = "bubblewrap"; }',
        "needs\nservices.prts.executors.local.bubblewrap = true"),
    "docker executor": (
        "{ services.prts.executors.docker.enable = true; }",
        "has no docker executor"),
    "kubernetes executor": (
        '{ services.prts.executors.kubernetes.kubeconfigFile = "/run/keys/kubeconfig"; }',
        "has no kubernetes executor"),
    "backup inside the data": (
        '{ services.prts.backup = { enable = true; directory = "/var/lib/prts/backups"; }; }',
        "must lie outside services.prts.dataDir"),
}


@pytest.mark.parametrize("case", sorted(BAD_COMBINATIONS))
def test_each_assertion_fires_on_its_bad_combination(case):
    configuration, message = BAD_COMBINATIONS[case]
    failed = evaluate(configuration)["failedAssertions"]
    assert len(failed) == 1 and message in failed[0], failed
