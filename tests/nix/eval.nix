# Evaluates nixosModules.prts with nixpkgs' lib.evalModules and small stand-in
# declarations of the NixOS options it sets (systemd, users, services.postgresql, ...).
# Full nixpkgs cannot be fetched here, so packages are stand-ins too: attribute sets with
# an outPath, and writeShellScript keeps the script's text for the test to read.
# Used by tests/nix/test_module_eval.py:
#   nix-instantiate --eval --strict --json -E 'import tests/nix/eval.nix { libPath = ...; configuration = { ... }; }'
{
  libPath,
  configuration ? { },
}:
let
  lib = import libPath;
  inherit (lib) types mkOption;

  fakePackage = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    meta.mainProgram = name;
  };

  script = name: text: fakePackage name // { inherit text; };

  pkgs = {
    prts = fakePackage "prts-0.1.0" // {
      version = "0.1.0";
      meta.mainProgram = "prts";
    };
    formats.toml = _: {
      type = types.attrsOf types.anything;
      generate = name: value: fakePackage name // { content = value; };
    };
    writeShellScript = script;
    writeShellScriptBin = script;
  }
  // lib.genAttrs [
    "git"
    "coreutils"
    "bubblewrap"
    "openssl"
    "sqlite"
    "minio-client"
    "systemd"
    "postgresql"
    "util-linux"
  ] fakePackage;

  freeform = types.submodule { freeformType = types.attrsOf types.anything; };
  anyOption = mkOption {
    type = types.attrsOf types.anything;
    default = { };
  };
  listOption = mkOption {
    type = types.listOf types.anything;
    default = [ ];
  };
  boolOption = mkOption {
    type = types.bool;
    default = false;
  };
  strOption = mkOption {
    type = types.nullOr types.str;
    default = null;
  };

  unit = types.submodule {
    freeformType = types.attrsOf types.anything;
    options = {
      serviceConfig = anyOption;
      environment = mkOption {
        type = types.attrsOf types.str;
        default = { };
      };
      after = listOption;
      before = listOption;
      wants = listOption;
      requires = listOption;
      requiredBy = listOption;
      wantedBy = listOption;
      partOf = listOption;
      path = listOption;
      restartTriggers = listOption;
    };
  };

  # The NixOS options services.prts sets, declared loosely: enough to merge and inspect.
  stubs = {
    options = {
      assertions = listOption;
      warnings = listOption;
      systemd = {
        package = mkOption { default = pkgs.systemd; };
        services = mkOption {
          type = types.attrsOf unit;
          default = { };
        };
        timers = mkOption {
          type = types.attrsOf freeform;
          default = { };
        };
        targets = mkOption {
          type = types.attrsOf freeform;
          default = { };
        };
        tmpfiles.settings = anyOption;
      };
      users = {
        users = mkOption {
          type = types.attrsOf (
            types.submodule {
              freeformType = types.attrsOf types.anything;
              options.extraGroups = listOption;
            }
          );
          default = { };
        };
        groups = anyOption;
      };
      environment = {
        etc = mkOption {
          type = types.attrsOf freeform;
          default = { };
        };
        systemPackages = listOption;
      };
      networking = {
        fqdnOrHostName = mkOption { default = "appliance"; };
        firewall.allowedTCPPorts = listOption;
      };
      virtualisation.docker.enable = boolOption;
      # Set by images/appliance.nix around the service.
      system.stateVersion = strOption;
      networking.hostName = strOption;
      image.modules = anyOption;
      fileSystems = anyOption;
      boot.loader.grub.devices = listOption;
      services = {
        openssh = anyOption;
        postgresql = {
          enable = boolOption;
          package = mkOption { default = pkgs.postgresql; };
          ensureDatabases = listOption;
          ensureUsers = listOption;
        };
        redis.servers = mkOption {
          type = types.attrsOf (
            types.submodule (
              { name, ... }:
              {
                freeformType = types.attrsOf types.anything;
                options.group = mkOption { default = "redis-${name}"; };
              }
            )
          );
          default = { };
        };
        minio = {
          enable = boolOption;
          listenAddress = strOption;
          consoleAddress = strOption;
          rootCredentialsFile = strOption;
        };
        clickhouse.enable = boolOption;
        nginx = mkOption {
          type = freeform;
          default = { };
        };
      };
    };
  };

  evaluated = lib.evalModules {
    modules = [
      ../../nixos-modules
      stubs
      configuration
    ];
    specialArgs = { inherit pkgs; };
  };
  inherit (evaluated) config options;
  cfg = config.services.prts;

  # Every option path under a prefix, as dotted names.
  optionNames =
    prefix: tree:
    lib.concatLists (
      lib.mapAttrsToList (
        name: value:
        let
          dotted = if prefix == "" then name else "${prefix}.${name}";
        in
        if lib.isOption value then [ dotted ] else optionNames dotted value
      ) (builtins.removeAttrs tree [ "_module" ])
    );

  unitSummary = _: u: {
    inherit (u)
      after
      before
      requiredBy
      wants
      requires
      partOf
      wantedBy
      environment
      ;
    preStart = u.preStart or null;
    serviceConfig = u.serviceConfig;
    path = map (p: p.name or p) u.path;
  };
in
{
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  units = lib.mapAttrs unitSummary config.systemd.services;
  timers = config.systemd.timers;
  targets = builtins.attrNames config.systemd.targets;
  tmpfiles = config.systemd.tmpfiles.settings;
  configFile = config.environment.etc."prts/prts.toml".source.content;
  scripts = {
    withCredentials = cfg.internal.withCredentials.text;
    manage = (builtins.head config.environment.systemPackages).text;
  };
  users = config.users.users;
  firewall = config.networking.firewall.allowedTCPPorts;
  postgresql = config.services.postgresql;
  redis = config.services.redis.servers;
  minio = config.services.minio;
  clickhouse = config.services.clickhouse.enable;
  nginx = config.services.nginx;
  docker = config.virtualisation.docker.enable;
  settingsOptions = optionNames "" (options.services.prts.settings.type.getSubOptions [ ]);
  secretFileOptions = builtins.attrNames (
    builtins.removeAttrs (options.services.prts.secretFiles.type.getSubOptions [ ]) [ "_module" ]
  );
}
