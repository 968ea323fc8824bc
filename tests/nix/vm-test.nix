# A NixOS VM test of services.prts, once per database: boot the module, wait for the web
# unit, sign in over HTTP with the form (CSRF token and all), make a project and a token
# with prts-manage, push a repository holding .prts/pipeline.yaml over smart HTTP, and
# watch the pipeline's run succeed through the JSON API.
#
# The flake builds it as checks.<system>.vm-postgresql and vm-sqlite:
#   import ./tests/nix/vm-test.nix { inherit pkgs; prtsModule = ...; database = "sqlite"; }
# pkgs must carry pkgs.prts (the flake's overlay).
{
  pkgs,
  prtsModule,
  database,
}:

assert pkgs.lib.assertOneOf "database" database [
  "postgresql"
  "sqlite"
];

let
  password = "vm-test: correct horse battery staple";
in
pkgs.testers.runNixOSTest {
  name = "prts-${database}";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ prtsModule ];

      virtualisation.memorySize = 3072;
      virtualisation.diskSize = 4096;
      virtualisation.cores = 2;

      services.prts = {
        enable = true;
        package = pkgs.prts;
        # postgresql: local PostgreSQL (peer auth) and Redis, as a production host runs.
        # sqlite: the embedded path, SQLite for the database and the queue.
        database.createLocally = database == "postgresql";
        redis.createLocally = database == "postgresql";
        # The LoadCredential path real hosts use for their secret files.
        secretFiles."secrets.key" = "/var/lib/prts-test-secrets/secrets-key";
      };
      # A fixed key (it is in the Nix store through this rule) is fine for a throw-away
      # test VM, never elsewhere; tmpfiles writes it before any service starts.
      systemd.tmpfiles.rules = [
        "d /var/lib/prts-test-secrets 0700 root root -"
        "f /var/lib/prts-test-secrets/secrets-key 0600 root root - pA5Uag/TBLe2RTGOTz4kbcqiyx0UdGaMx0GUlRleMOE="
      ];

      environment.systemPackages = [
        pkgs.git
        pkgs.curl
      ];
    };

  testScript = ''
    import json
    import re
    import shlex

    base = "http://127.0.0.1:8080"
    password = ${builtins.toJSON password}

    machine.wait_for_unit("prts.target")
    machine.wait_for_unit("prts-web.service")
    machine.wait_for_unit("prts-worker-1.service")
    machine.wait_for_open_port(8080)
    machine.wait_until_succeeds(f"curl -fsS {base}/readyz", timeout=120)

    with subtest("an administrator made with prts-manage signs in with the form"):
        machine.succeed(
            f"printf '%s\\n' {shlex.quote(password)} | prts-manage user create alice --admin"
        )
        page = machine.succeed(f"curl -fsS -c /tmp/jar -b /tmp/jar {base}/login")
        found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
        assert found, f"no CSRF token on /login:\n{page}"
        answer = machine.succeed(
            "curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' -c /tmp/jar -b /tmp/jar"
            f" --data-urlencode csrf_token={shlex.quote(found.group(1))}"
            " --data-urlencode username=alice"
            f" --data-urlencode password={shlex.quote(password)}"
            f" {base}/login"
        )
        status, _, location = answer.partition(" ")
        assert status == "302" and "/login" not in location, f"sign-in refused: {answer}"
        dashboard = machine.succeed(f"curl -fsSL -b /tmp/jar {base}/")
        assert "Signed in as" in dashboard and "alice" in dashboard, dashboard

    with subtest("a pushed pipeline runs to success"):
        machine.succeed("prts-manage org create acme")
        machine.succeed("prts-manage project create acme/demo --member alice:maintainer")
        token = machine.succeed("prts-manage token create alice --scope write").strip().splitlines()[-1]
        assert token.startswith("prts_"), token

        pipeline = "\n".join([
            'version: "1.0"',
            "name: VM test",
            "stages:",
            "  - name: build",
            "    jobs:",
            "      - name: hello",
            '        steps: [ { run: "echo built on $(uname -n) && test -f README.md" } ]',
            "",
        ])
        machine.succeed(
            "rm -rf /tmp/work && mkdir -p /tmp/work/.prts && cd /tmp/work"
            " && git init -q -b main"
            f" && printf '%s' {shlex.quote(pipeline)} > .prts/pipeline.yaml"
            " && echo hello > README.md && git add ."
            " && git -c user.name=vm -c user.email=vm@test commit -qm first"
            f" && git push -q http://alice:{token}@127.0.0.1:8080/acme/demo.git main"
        )

        def run_succeeded(last_try):
            listed = json.loads(machine.succeed(
                f"curl -fsS -H 'Authorization: Bearer {token}' {base}/api/v1/projects/acme/demo/runs"
            ))
            runs = listed["items"]
            if last_try:
                machine.log(f"runs: {runs}")
            assert len(runs) <= 1, f"one push, several runs: {runs}"
            if runs and runs[0]["status"] in ("failed", "canceled", "skipped"):
                raise Exception(f"the run ended {runs[0]['status']}: {runs[0]}")
            return bool(runs) and runs[0]["status"] == "success"

        retry(run_succeeded, timeout=300)
  '';
}
