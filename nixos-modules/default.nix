# services.prts: the PRTS appliance as NixOS services (docs/nixos.md).
#
# Written after nixpkgs' forgejo.nix and sourcehut/service.nix: RFC 42 freeform `settings`
# whose well-known keys are typed (from settings.json, the app's own key list), secrets as
# file paths handed over with systemd's LoadCredential (never in the Nix store), one
# hardening block shared by every unit, and assertions for impossible combinations.
# The backends (backends.nix), the reverse proxy (proxy.nix) and the backup timer
# (backup.nix) are parts of the same module.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkOption
    mkEnableOption
    mkPackageOption
    mkIf
    mkDefault
    types
    ;

  cfg = config.services.prts;
  keyLib = import ./settings.nix { inherit lib; };
  tomlFormat = pkgs.formats.toml { };

  # TOML has no null: a key left null keeps the application's own default.
  configFile = tomlFormat.generate "prts.toml" (lib.filterAttrsRecursive (_: v: v != null) cfg.settings);

  # One entry per secret that has a file: systemd reads the file as root and the service
  # finds it as $CREDENTIALS_DIRECTORY/<name>, which the reader takes as PRTS_<KEY>_FILE.
  credentials =
    map
      (k: {
        name = keyLib.credentialName k.key;
        env = "${k.env}_FILE";
        file = cfg.secretFiles.${k.key};
      })
      (builtins.filter (k: cfg.secretFiles.${k.key} != null) keyLib.secretKeys)
    ++ cfg.internal.extraCredentials;

  loadCredential = map (c: "${c.name}:${c.file}") credentials;

  # Runs a command with every credential's _FILE variable pointing into the credentials
  # directory; systemd only knows that directory at run time, so a script sets them.
  withCredentials = pkgs.writeShellScript "prts-with-credentials" ''
    ${lib.concatMapStrings (c: ''
      export ${c.env}="$CREDENTIALS_DIRECTORY/${c.name}"
    '') credentials}
    exec "$@"
  '';

  prts = lib.getExe cfg.package;

  runtimePath = [
    pkgs.git
    pkgs.coreutils
  ]
  ++ lib.optional cfg.executors.local.bubblewrap pkgs.bubblewrap;

  # Migrations run before the web server starts, and only when the package changed: the
  # store path names the version and everything it was built from.
  migrateIfChanged = ''
    stamp=${lib.escapeShellArg cfg.dataDir}/.migrated-package
    if [ "$(cat "$stamp" 2>/dev/null || true)" != ${lib.escapeShellArg "${cfg.package}"} ]; then
      ${withCredentials} ${prts} migrate
      printf '%s\n' ${lib.escapeShellArg "${cfg.package}"} > "$stamp"
    fi
  '';

  # The hardening every PRTS unit shares.
  #  - No ProtectKernelTunables/ProtectProc/PrivateUsers/RestrictNamespaces: bubblewrap
  #    creates user, pid and mount namespaces and mounts a fresh /proc for each job, which
  #    the kernel refuses when /proc carries the read-only overmounts those options add.
  #  - No MemoryDenyWriteExecute: cffi callbacks and chdb need writable executable pages.
  hardening = {
    User = cfg.user;
    Group = cfg.group;
    WorkingDirectory = cfg.dataDir;
    ReadWritePaths = [ cfg.dataDir ];
    UMask = "0027";
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    NoNewPrivileges = true;
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    RestrictSUIDSGID = true;
    RestrictRealtime = true;
    LockPersonality = true;
    RemoveIPC = true;
    RestrictAddressFamilies = [
      "AF_UNIX"
      "AF_INET"
      "AF_INET6"
      "AF_NETLINK"
    ];
    SystemCallArchitectures = "native";
    SystemCallFilter = [ "@system-service" ];
    LoadCredential = loadCredential;
  }
  // lib.optionalAttrs (cfg.dataDir == "/var/lib/prts") {
    StateDirectory = "prts";
    StateDirectoryMode = "0750";
  };

  unitDependencies = cfg.internal.dependencies;

  commonUnit = {
    after = [ "network.target" ] ++ unitDependencies;
    requires = unitDependencies;
    partOf = [ "prts.target" ];
    wantedBy = [ "prts.target" ];
    environment = cfg.internal.environment;
    path = runtimePath;
    restartTriggers = [ configFile ];
  };

  workerUnit =
    i:
    lib.nameValuePair "prts-worker-${toString i}" (
      lib.recursiveUpdate commonUnit {
        description = "PRTS worker ${toString i} (Huey consumer running pipeline jobs)";
        # Stopping or restarting the web unit takes the workers with it; they start after
        # it so that they never run against a schema still being migrated.
        after = commonUnit.after ++ [ "prts-web.service" ];
        wants = [ "prts-web.service" ];
        partOf = [
          "prts.target"
          "prts-web.service"
        ];
        environment = cfg.internal.workerEnvironment;
        serviceConfig = hardening // {
          ExecStart = "${withCredentials} ${prts} worker";
          # Huey's consumer stops at once on SIGTERM but lets running tasks finish on SIGINT.
          KillSignal = "SIGINT";
          TimeoutStopSec = cfg.worker.stopTimeout;
          Restart = "on-failure";
          RestartSec = "5s";
          SupplementaryGroups = cfg.internal.workerGroups;
          # bubblewrap mounts inside the job's own namespaces.
          SystemCallFilter =
            hardening.SystemCallFilter ++ lib.optional cfg.executors.local.bubblewrap "@mount";
        };
      }
    );

  prtsManage = pkgs.writeShellScriptBin "prts-manage" ''
    # Runs `prts ARGS...` as ${cfg.user} with the services' configuration, environment and
    # credentials, in a transient unit (secrets stay readable by root only on disk).
    if [ "$(id -u)" != 0 ]; then
      echo "prts-manage: run it as root (it starts a transient unit as ${cfg.user})" >&2
      exit 1
    fi
    if [ -t 0 ] && [ -t 1 ]; then mode=--pty; else mode=--pipe; fi
    exec ${config.systemd.package}/bin/systemd-run --quiet --wait --collect "$mode" \
      --property=User=${cfg.user} --property=Group=${cfg.group} \
      --property=WorkingDirectory=${lib.escapeShellArg cfg.dataDir} \
      ${lib.concatMapStringsSep " " (c: "--property=LoadCredential=${lib.escapeShellArg c}") loadCredential} \
      ${
        lib.concatStringsSep " " (
          lib.mapAttrsToList (n: v: "--setenv=${lib.escapeShellArg "${n}=${v}"}") (
            cfg.internal.environment // { PATH = lib.makeBinPath runtimePath; }
          )
        )
      } \
      ${withCredentials} ${prts} "$@"
  '';

  settingAt = key: lib.attrByPath (lib.splitString "." key) null cfg.settings;
in
{
  imports = [
    ./backends.nix
    ./proxy.nix
    ./backup.nix
  ];

  options.services.prts = {
    enable = mkEnableOption "PRTS, the self-hosted DevOps appliance";

    package = mkPackageOption pkgs "prts" { };

    user = mkOption {
      type = types.str;
      default = "prts";
      description = "User the PRTS services run as (created when left as prts).";
    };

    group = mkOption {
      type = types.str;
      default = "prts";
      description = "Group of the PRTS services (created when left as prts).";
    };

    dataDir = mkOption {
      type = types.externalPath;
      default = "/var/lib/prts";
      description = "Directory for repositories, job workspaces and the embedded backends (`data_dir`).";
    };

    settings = mkOption {
      type = types.submodule {
        freeformType = tomlFormat.type;
        options = keyLib.settingsOptions;
      };
      default = { };
      example = lib.literalExpression ''
        {
          web.public_url = "https://prts.example.org";
          auth.ldap = { url = "ldaps://ldap.example.org"; user_base = "ou=people,dc=example,dc=org"; };
          pipelines.job_concurrency = 8;
        }
      '';
      description = ''
        Configuration written to /etc/prts/prts.toml; every key is documented in
        docs/configuration.md. Secrets do not belong here (this file is in the
        world-readable Nix store): give them as files in {option}`services.prts.secretFiles`.
        LDAP and single sign-on are `settings.auth.ldap`, `settings.auth.oidc`,
        `settings.auth.github` and `settings.auth.gitlab`; the web server is `settings.web`.
      '';
    };

    secretFiles = mkOption {
      type = types.submodule { options = keyLib.secretFileOptions; };
      default = { };
      example = {
        "secrets.key" = "/run/keys/prts-secrets-key";
        "auth.ldap.bind_password" = "/run/keys/prts-ldap-bind-password";
      };
      description = ''
        Files holding secret settings, by the setting's key. systemd reads each file
        (`LoadCredential`), so it may be owned by root with mode 0600; the services see
        it as `PRTS_<KEY>_FILE`.
      '';
    };

    worker = {
      instances = mkOption {
        type = types.ints.positive;
        default = 1;
        description = "Worker units (prts-worker-1 ... prts-worker-N), each running `settings.queue.workers` threads.";
      };
      stopTimeout = mkOption {
        type = types.str;
        default = "15min";
        description = "How long a stopping worker may take to finish its running jobs before it is killed.";
      };
    };

    executors = {
      local.bubblewrap = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Run local-executor jobs in bubblewrap: read-only system, private /tmp and pid
          namespace, no capabilities (`pipelines.local.isolation = "bubblewrap"`).
          Needs unprivileged user namespaces.
        '';
      };
      docker.enable = mkEnableOption "the docker executor: the workers may use this host's Docker engine";
      kubernetes.kubeconfigFile = mkOption {
        type = types.nullOr types.externalPath;
        default = null;
        description = "Kubeconfig of the cluster where the kubernetes executor starts a Pod per job.";
      };
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the web port: 80 and 443 when {option}`services.prts.nginx.enable`, otherwise
        the port of `settings.web.listen` (which must then listen beyond loopback).
      '';
    };

    # Set by the module's parts, not by users.
    internal = {
      environment = mkOption {
        type = types.attrsOf types.str;
        default = { };
        internal = true;
        description = "Environment of every PRTS unit (and of prts-manage).";
      };
      workerEnvironment = mkOption {
        type = types.attrsOf types.str;
        internal = true;
        description = "Environment of the worker units.";
      };
      workerGroups = mkOption {
        type = types.listOf types.str;
        default = [ ];
        internal = true;
        description = "Supplementary groups of the worker units.";
      };
      dependencies = mkOption {
        type = types.listOf types.str;
        default = [ ];
        internal = true;
        description = "Units the PRTS units need running first (local backends).";
      };
      hardening = mkOption {
        type = types.attrsOf types.unspecified;
        internal = true;
        readOnly = true;
        description = "The serviceConfig hardening every PRTS unit shares.";
      };
      withCredentials = mkOption {
        type = types.unspecified;
        internal = true;
        readOnly = true;
        description = "Script running a command with the credentials' _FILE variables set.";
      };
      extraCredentials = mkOption {
        type = types.listOf (types.attrsOf types.str);
        default = [ ];
        internal = true;
        description = "Credentials beyond secretFiles: { name, env, file }.";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions =
      map (k: {
        assertion = settingAt k.key == null;
        message = ''
          services.prts.settings.${k.key} would put a secret into the world-readable Nix store;
          use services.prts.secretFiles."${k.key}" (a file path) instead.
        '';
      }) keyLib.secretKeys
      ++ [
        {
          assertion = cfg.executors.docker.enable -> keyLib.executorAvailable "docker";
          message = ''
            services.prts.executors.docker.enable: this PRTS package has no docker executor
            (pipelines.executor accepts ${lib.concatStringsSep ", " (lib.findFirst (k: k.key == "pipelines.executor") null keyLib.keys).choices}).
          '';
        }
        {
          assertion = cfg.executors.kubernetes.kubeconfigFile != null -> keyLib.executorAvailable "kubernetes";
          message = ''
            services.prts.executors.kubernetes.kubeconfigFile: this PRTS package has no kubernetes executor
            (pipelines.executor accepts ${lib.concatStringsSep ", " (lib.findFirst (k: k.key == "pipelines.executor") null keyLib.keys).choices}).
          '';
        }
        {
          assertion = cfg.settings.pipelines.local.isolation == "bubblewrap" -> cfg.executors.local.bubblewrap;
          message = ''
            services.prts.settings.pipelines.local.isolation = "bubblewrap" needs
            services.prts.executors.local.bubblewrap = true (it puts bubblewrap on the workers' PATH).
          '';
        }
      ];

    services.prts.settings = {
      data_dir = mkDefault cfg.dataDir;
      pipelines.local.isolation = mkDefault (if cfg.executors.local.bubblewrap then "bubblewrap" else "none");
    };

    services.prts.internal.workerEnvironment = lib.mkMerge [
      cfg.internal.environment
      (mkIf cfg.executors.docker.enable { DOCKER_HOST = "unix:///run/docker.sock"; })
    ];
    services.prts.internal.hardening = hardening;
    services.prts.internal.withCredentials = withCredentials;
    services.prts.internal.workerGroups = lib.optional cfg.executors.docker.enable "docker";
    services.prts.internal.extraCredentials = lib.optional (cfg.executors.kubernetes.kubeconfigFile != null) {
      name = "kubeconfig";
      env = "KUBECONFIG";
      file = cfg.executors.kubernetes.kubeconfigFile;
    };
    virtualisation.docker.enable = mkIf cfg.executors.docker.enable (mkDefault true);

    environment.etc."prts/prts.toml".source = configFile;
    environment.systemPackages = [ prtsManage ];

    users.users = mkIf (cfg.user == "prts") {
      prts = {
        isSystemUser = true;
        inherit (cfg) group;
        home = cfg.dataDir;
        description = "PRTS service user";
      };
    };
    users.groups = mkIf (cfg.group == "prts") { prts = { }; };

    systemd.tmpfiles.settings."10-prts".${cfg.dataDir}.d = {
      inherit (cfg) user group;
      mode = "0750";
    };

    systemd.targets.prts = {
      description = "PRTS appliance (web and workers)";
      wantedBy = [ "multi-user.target" ];
    };

    systemd.services = {
      prts-web = lib.recursiveUpdate commonUnit {
        description = "PRTS web (gunicorn)";
        preStart = migrateIfChanged;
        serviceConfig = hardening // {
          ExecStart = "${withCredentials} ${prts} web";
          # gunicorn finishes the requests in flight on SIGTERM.
          KillSignal = "SIGTERM";
          Restart = "on-failure";
          RestartSec = "5s";
          TimeoutStartSec = "15min"; # a first migration of a large database takes a while
        };
      };
    }
    // lib.listToAttrs (map workerUnit (lib.range 1 cfg.worker.instances));
  };
}
