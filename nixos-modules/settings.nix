# Typed NixOS options for every key PRTS's configuration reader accepts.
#
# settings.json is the output of `prts config schema` (appliance/config.py SETTINGS);
# tests/nix/test_module_keys.py holds the two equal, so the module cannot drift from the
# reader. Secret keys are not options under `settings` (the TOML file lands in the
# world-readable Nix store); each gets a file-path option under `secretFiles` instead.
{ lib }:
let
  inherit (lib) types mkOption;

  keys = lib.importJSON ./settings.json;

  # The reader's own check for host:port (appliance/config.py _parse_listen).
  listenType = types.strMatching "^.+:[0-9]{1,5}$";

  intAtLeast =
    minimum:
    types.addCheck types.int (v: v >= minimum)
    // {
      description = "integer, at least ${toString minimum}";
    };

  valueType =
    key:
    if key.choices != [ ] then
      types.enum key.choices
    else if key.type == "bool" then
      types.bool
    else if key.type == "listen" then
      listenType
    else if key.type == "int" then
      (if key.minimum == null then types.int else intAtLeast key.minimum)
    else
      types.str;

  settingOption =
    key:
    mkOption {
      type = if key.default == null then types.nullOr (valueType key) else valueType key;
      inherit (key) default;
      description = "${key.description} (`${key.key}` in prts.toml, `${key.env}` in the environment.)";
    };

  secretFileOption =
    key:
    mkOption {
      type = types.nullOr types.externalPath;
      default = null;
      example = "/run/keys/prts-${credentialName key.key}";
      description = ''
        File holding `${key.key}`: ${key.description} Read by systemd (`LoadCredential`)
        as root and handed to the services, so it may be readable by root only.
      '';
    };

  # "database.url" -> "database-url": a credential's name inside $CREDENTIALS_DIRECTORY.
  credentialName = lib.replaceStrings [ "." "_" ] [ "-" "-" ];

  path = key: lib.splitString "." key.key;

  nested = f: list: lib.foldl' lib.recursiveUpdate { } (map (k: lib.setAttrByPath (path k) (f k)) list);

  plainKeys = builtins.filter (k: !k.secret) keys;
  secretKeys = builtins.filter (k: k.secret) keys;
in
{
  inherit
    keys
    plainKeys
    secretKeys
    credentialName
    path
    ;

  settingsOptions = nested settingOption plainKeys;

  secretFileOptions = lib.listToAttrs (map (k: lib.nameValuePair k.key (secretFileOption k)) secretKeys);

  # Whether the installed application offers an executor (pipelines.executor's choices).
  executorAvailable =
    name: builtins.elem name (lib.findFirst (k: k.key == "pipelines.executor") { choices = [ ]; } keys).choices;
}
