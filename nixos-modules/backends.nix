# The backends services.prts can create on the same host: PostgreSQL (peer
# authentication over the socket), Redis (a private instance on a socket), MinIO (with
# generated credentials) and ClickHouse. Anything not created locally is either embedded
# (SQLite, a directory, chdb) or external, named in `settings` with its secret in
# `secretFiles`.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption mkIf mkDefault types;
  cfg = config.services.prts;

  redisSocket = "/run/redis-prts/redis.sock";
  credentialsDir = "/var/lib/prts-credentials";
  minioEndpoint = cfg.objectStore.address;

  # Root-owned credentials for the local MinIO, made once at first boot: MinIO reads the
  # environment file, PRTS reads the two key files through LoadCredential.
  minioCredentials = pkgs.writeShellScript "prts-minio-credentials" ''
    set -eu
    umask 077
    dir=${credentialsDir}
    if [ ! -s "$dir/minio-root.env" ]; then
      secret=$(${pkgs.openssl}/bin/openssl rand -hex 32)
      printf '%s\n' prts > "$dir/objects-access-key.tmp"
      printf '%s\n' "$secret" > "$dir/objects-secret-key.tmp"
      printf 'MINIO_ROOT_USER=prts\nMINIO_ROOT_PASSWORD=%s\n' "$secret" > "$dir/minio-root.env.tmp"
      mv "$dir/objects-access-key.tmp" "$dir/objects-access-key"
      mv "$dir/objects-secret-key.tmp" "$dir/objects-secret-key"
      mv "$dir/minio-root.env.tmp" "$dir/minio-root.env"
    fi
  '';

  setByUser = key: cfg.secretFiles.${key} != null;
in
{
  options.services.prts = {
    database.createLocally = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Create a local PostgreSQL database named after the service user, reached over
        the socket with peer authentication (no password). When false, PRTS uses the
        database in `secretFiles."database.url"`, or SQLite in the data directory when
        that is unset.
      '';
    };

    redis.createLocally = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Create a private Redis instance on a Unix socket for the job queue and live
        pub/sub. When false, they are embedded (SQLite queue, in-process pub/sub) unless
        `settings.queue`/`settings.pubsub` name another Redis.
      '';
    };

    objectStore = {
      createLocally = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Run MinIO on this host for logs and artifacts, with credentials generated at
          first boot. When false, objects live in a directory under the data directory,
          or in the S3 service named by `settings.objects` (endpoint, bucket) with keys in
          `secretFiles."objects.access_key"` and `secretFiles."objects.secret_key"`.
        '';
      };
      address = mkOption {
        type = types.str;
        default = "127.0.0.1:9010";
        description = "Address of the local MinIO (ClickHouse takes 9000).";
      };
    };

    clickhouse.createLocally = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Run a ClickHouse server on this host for metrics, the log index, audit and cost.
        When false, analytics run in-process (chdb) or on the server named by
        `settings.analytics` with its password in `secretFiles."analytics.password"`.
      '';
    };
  };

  config = mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions = [
          {
            assertion = !(cfg.database.createLocally && setByUser "database.url");
            message = ''
              services.prts.database.createLocally and services.prts.secretFiles."database.url"
              both choose the database: set createLocally = false to use the external one.
            '';
          }
          {
            assertion = !(cfg.redis.createLocally && (setByUser "queue.url" || setByUser "pubsub.url"));
            message = ''
              services.prts.redis.createLocally and services.prts.secretFiles."queue.url"/"pubsub.url"
              both choose the Redis: set redis.createLocally = false to use the external one.
            '';
          }
          {
            assertion =
              !(cfg.objectStore.createLocally && (setByUser "objects.access_key" || setByUser "objects.secret_key"));
            message = ''
              services.prts.objectStore.createLocally generates the MinIO credentials itself;
              remove services.prts.secretFiles."objects.access_key"/"objects.secret_key" or set createLocally = false.
            '';
          }
          {
            assertion =
              cfg.settings.objects.backend == "s3" && !cfg.objectStore.createLocally
              -> cfg.settings.objects.endpoint != "" && setByUser "objects.access_key" && setByUser "objects.secret_key";
            message = ''
              services.prts.settings.objects.backend = "s3" needs settings.objects.endpoint and
              secretFiles."objects.access_key" and secretFiles."objects.secret_key" (or objectStore.createLocally = true).
            '';
          }
          {
            assertion = !(cfg.clickhouse.createLocally && cfg.settings.analytics.host != "" && cfg.settings.analytics.host != "127.0.0.1");
            message = ''
              services.prts.clickhouse.createLocally runs ClickHouse on 127.0.0.1, but
              settings.analytics.host names ${cfg.settings.analytics.host}: choose one.
            '';
          }
          {
            assertion =
              cfg.settings.analytics.backend == "clickhouse" && !cfg.clickhouse.createLocally
              -> cfg.settings.analytics.host != "";
            message = ''
              services.prts.settings.analytics.backend = "clickhouse" needs settings.analytics.host
              (or clickhouse.createLocally = true).
            '';
          }
          {
            assertion =
              !(cfg.objectStore.createLocally && cfg.clickhouse.createLocally && lib.hasSuffix ":9000" cfg.objectStore.address);
            message = "services.prts.objectStore.address: port 9000 is ClickHouse's native port; pick another.";
          }
        ];
      }

      (mkIf cfg.database.createLocally {
        services.postgresql = {
          enable = true;
          ensureDatabases = [ cfg.user ];
          ensureUsers = [
            {
              name = cfg.user;
              ensureDBOwnership = true;
            }
          ];
        };
        # No password anywhere: the socket's peer authentication maps the unit's user.
        services.prts.internal.environment.PRTS_DATABASE_URL = "postgresql://${cfg.user}@/${cfg.user}?host=/run/postgresql";
        services.prts.internal.dependencies = [ "postgresql.service" ];
      })

      (mkIf cfg.redis.createLocally {
        services.redis.servers.prts = {
          enable = true;
          port = 0; # socket only
          unixSocket = redisSocket;
          unixSocketPerm = 660;
        };
        users.users.${cfg.user}.extraGroups = [ config.services.redis.servers.prts.group ];
        services.prts.settings = {
          queue.backend = mkDefault "redis";
          pubsub.backend = mkDefault "redis";
        };
        services.prts.internal.environment = {
          PRTS_QUEUE_URL = "unix://${redisSocket}";
          PRTS_PUBSUB_URL = "unix://${redisSocket}";
        };
        services.prts.internal.dependencies = [ "redis-prts.service" ];
      })

      (mkIf cfg.objectStore.createLocally {
        systemd.services.prts-minio-credentials = {
          description = "Generate the credentials of PRTS's MinIO";
          wantedBy = [ "multi-user.target" ];
          before = [
            "minio.service"
            "prts-web.service"
          ];
          requiredBy = [ "minio.service" ];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
            StateDirectory = "prts-credentials";
            StateDirectoryMode = "0700";
            ExecStart = "${minioCredentials}";
          };
        };
        services.minio = {
          enable = true;
          listenAddress = minioEndpoint;
          consoleAddress = "127.0.0.1:9011";
          rootCredentialsFile = "${credentialsDir}/minio-root.env";
        };
        services.prts.settings.objects = {
          backend = mkDefault "s3";
          endpoint = mkDefault minioEndpoint;
          secure = mkDefault false;
        };
        services.prts.internal.extraCredentials = [
          {
            name = "objects-access-key";
            env = "PRTS_OBJECTS_ACCESS_KEY_FILE";
            file = "${credentialsDir}/objects-access-key";
          }
          {
            name = "objects-secret-key";
            env = "PRTS_OBJECTS_SECRET_KEY_FILE";
            file = "${credentialsDir}/objects-secret-key";
          }
        ];
        services.prts.internal.dependencies = [
          "minio.service"
          "prts-minio-credentials.service"
        ];
      })

      (mkIf cfg.clickhouse.createLocally {
        services.clickhouse.enable = true;
        services.prts.settings.analytics = {
          backend = mkDefault "clickhouse";
          host = mkDefault "127.0.0.1";
        };
        services.prts.internal.dependencies = [ "clickhouse.service" ];
      })
    ]
  );
}
