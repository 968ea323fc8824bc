# A timer that backs PRTS up: a dump of the database, a copy of the object store (logs and
# artifacts) and of the hosted repositories, into one dated directory per run; the oldest
# beyond `keep` are removed. Keys (secrets.key, web.secret_key, the secretFiles) are not
# in it on purpose: keep them apart from the data they unlock.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption mkIf types;
  cfg = config.services.prts;
  backup = cfg.backup;
  s = cfg.settings;

  objectsDir = if s.objects.path != "" then s.objects.path else "${cfg.dataDir}/objects";

  # Reads the same credentials as the services (the unit loads them); never echoes them.
  script = pkgs.writeShellScript "prts-backup" ''
    set -euo pipefail
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    dest=${lib.escapeShellArg backup.directory}/"$stamp"
    work="$dest.partial"
    mkdir -p "$work"

    # The database.
    if [ -n "''${PRTS_DATABASE_URL_FILE:-}" ]; then
      url=$(cat "$PRTS_DATABASE_URL_FILE")
    else
      url=''${PRTS_DATABASE_URL:-}
    fi
    if [ -n "$url" ]; then
      # libpq takes the SQLAlchemy URL once the driver name is dropped.
      ${config.services.postgresql.package}/bin/pg_dump --format=custom --file="$work/database.pgdump" \
        --dbname="$(printf '%s' "$url" | sed -e 's|^postgresql+psycopg://|postgresql://|' -e 's|^postgres://|postgresql://|')"
    else
      ${pkgs.sqlite}/bin/sqlite3 ${lib.escapeShellArg cfg.dataDir}/prts.db ".backup '$work/database.sqlite'"
    fi

    # The object store.
    ${
      if s.objects.backend == "s3" then
        ''
          access=$(cat "$PRTS_OBJECTS_ACCESS_KEY_FILE")
          secret=$(cat "$PRTS_OBJECTS_SECRET_KEY_FILE")
          export MC_CONFIG_DIR="$work/.mc"
          export MC_HOST_prts="${if s.objects.secure then "https" else "http"}://$access:$secret@${s.objects.endpoint}"
          ${pkgs.minio-client}/bin/mc --quiet mirror prts/${s.objects.bucket} "$work/objects"
          rm -rf "$MC_CONFIG_DIR"
        ''
      else
        ''
          cp -a ${lib.escapeShellArg objectsDir} "$work/objects"
        ''
    }

    # Hosted repositories: `git bundle` would miss hooks and config, so copy them whole.
    if [ -d ${lib.escapeShellArg cfg.dataDir}/repositories ]; then
      cp -a ${lib.escapeShellArg cfg.dataDir}/repositories "$work/repositories"
    fi

    mv "$work" "$dest"
    ls -1d ${lib.escapeShellArg backup.directory}/2*Z | head -n -${toString backup.keep} | xargs -r rm -rf --
  '';
in
{
  options.services.prts.backup = {
    enable = mkOption {
      type = types.bool;
      default = false;
      description = "Back PRTS up on a timer (database dump, object store and repositories).";
    };
    calendar = mkOption {
      type = types.str;
      default = "daily";
      example = "*-*-* 03:15:00";
      description = "When to back up (systemd OnCalendar).";
    };
    directory = mkOption {
      type = types.externalPath;
      default = "/var/backup/prts";
      description = "Where the dated backup directories go.";
    };
    keep = mkOption {
      type = types.ints.positive;
      default = 7;
      description = "Backups kept; older ones are removed after each successful run.";
    };
  };

  config = mkIf (cfg.enable && backup.enable) {
    assertions = [
      {
        assertion = !lib.hasPrefix (cfg.dataDir + "/") (backup.directory + "/");
        message = "services.prts.backup.directory must lie outside services.prts.dataDir (${cfg.dataDir}).";
      }
    ];

    systemd.tmpfiles.settings."10-prts-backup".${backup.directory}.d = {
      inherit (cfg) user group;
      mode = "0700";
    };

    systemd.services.prts-backup = {
      description = "Back up PRTS (database, object store, repositories)";
      after = [ "prts-web.service" ];
      environment = cfg.internal.environment;
      serviceConfig = cfg.internal.hardening // {
        Type = "oneshot";
        ExecStart = "${cfg.internal.withCredentials} ${script}";
        ReadWritePaths = [
          cfg.dataDir
          backup.directory
        ];
      };
    };

    systemd.timers.prts-backup = {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = backup.calendar;
        Persistent = true;
        RandomizedDelaySec = "10min";
      };
    };
  };
}
