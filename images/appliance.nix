# The one PRTS appliance: a NixOS configuration that the VM image (vm.nix), the ISO
# (iso.nix) and the flake's nixosConfigurations.appliance are all built from.
#
# PostgreSQL and Redis run locally (services.prts' createLocally defaults); objects stay in
# a directory under the data dir and analytics in chdb, so one machine needs nothing
# else. nginx answers on port 80 and proxies to gunicorn on 127.0.0.1:8080.
#
# First boot: prts-appliance-secrets.service writes the session and secrets keys before
# any PRTS unit starts; prts-appliance-admin.service creates the administrator with a
# random password once the web unit has migrated the database, and shows it at the
# console login prompt. No account on this machine has a default password: root is
# locked, and SSH (keys only) admits no one until a key is added to the configuration.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.prts;
  secretsDir = "/var/lib/prts-secrets";
  adminPasswordFile = "${secretsDir}/admin-password";
  # agetty prints every *.issue in /etc/issue.d after /etc/issue (util-linux agetty(8)).
  consoleIssue = "/etc/issue.d/50-prts-admin.issue";
  prtsUnits = [
    "prts-web.service"
  ] ++ map (n: "prts-worker-${toString n}.service") (lib.range 1 cfg.worker.instances);
in
{
  system.stateVersion = "25.11";
  networking.hostName = lib.mkDefault "prts";

  # Each image variant (nixpkgs' nixos/modules/image/images.nix) adds its own module to
  # this configuration through image.modules; see vm.nix and iso.nix.
  image.modules = {
    qemu = ./vm.nix;
    qemu-efi = ./vm.nix;
    iso = ./iso.nix;
  };

  # The installed system (nixosConfigurations.appliance, nixos-rebuild on the VM): the
  # root file system make-disk-image.nix labels "nixos", GRUB on the first virtio disk.
  # The image modules override both (mkImageMediaOverride; iso-image.nix turns GRUB
  # off), so the device list yields to disk-image.nix's own mkDefault instead of
  # doubling it.
  fileSystems."/" = lib.mkDefault {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  boot.loader.grub.devices = lib.mkOverride 1100 [ "/dev/vda" ];

  services.prts = {
    enable = true;
    database.createLocally = true;
    redis.createLocally = true;
    nginx.enable = true;
    # Reached by whatever address DHCP gave it, so no URL is fixed in advance: the app
    # builds its links and clone URLs from each request.
    settings.web.public_url = "";
    secretFiles = {
      "web.secret_key" = "${secretsDir}/web-secret-key";
      "secrets.key" = "${secretsDir}/secrets-key";
    };
  };
  # The PRTS site answers requests for any host name (its address is not known in advance).
  services.nginx.virtualHosts.${cfg.nginx.virtualHost}.default = true;
  networking.firewall.allowedTCPPorts = [ 80 ];

  # root keeps NixOS' default locked password ("!"); nothing here sets a password.
  services.openssh = {
    enable = true;
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "prohibit-password";
    };
  };

  systemd.services.prts-appliance-secrets = {
    description = "Generate the PRTS appliance's secret keys on first boot";
    requiredBy = prtsUnits;
    before = prtsUnits;
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      UMask = "0077";
    };
    path = [ pkgs.coreutils ];
    # Only missing files are written, so keys survive reboots and upgrades; each file
    # appears complete or not at all (written beside, then renamed).
    script = ''
      install -d -m 0700 -o root -g root ${secretsDir}
      generate() { # FILE BYTES: BYTES random bytes, base64
        if [ ! -s "$1" ]; then
          head -c "$2" /dev/urandom | base64 -w0 > "$1.new"
          mv "$1.new" "$1"
        fi
        chmod 0600 "$1"
      }
      generate ${secretsDir}/web-secret-key 48
      # secrets.key must be the base64 of exactly 32 bytes (AES-256-GCM).
      generate ${secretsDir}/secrets-key 32
    '';
  };

  systemd.services.prts-appliance-admin = {
    description = "Create the PRTS administrator on first boot";
    wantedBy = [ "multi-user.target" ];
    requires = [ "prts-web.service" ];
    after = [ "prts-web.service" ];
    # Once the password file exists the administrator exists: never run again.
    unitConfig.ConditionPathExists = "!${adminPasswordFile}";
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      UMask = "0077";
    };
    path = [
      pkgs.coreutils
      pkgs.util-linux
      "/run/current-system/sw"
    ];
    # The password is URL-safe base64 (no backslash, which agetty would read as an
    # escape). It is written out only after the account exists, so a failed attempt
    # leaves no password that opens nothing.
    script = ''
      password=$(head -c 18 /dev/urandom | base64 -w0 | tr '+/' '-_')
      printf '%s\n' "$password" | prts-manage user create admin --admin
      printf '%s\n' "$password" > ${adminPasswordFile}.new
      mv ${adminPasswordFile}.new ${adminPasswordFile}
      mkdir -p "$(dirname ${consoleIssue})"
      {
        echo "PRTS is running: open http://\4/ in a browser."
        echo "Sign in as admin with the initial password: $password"
        echo "(also in ${adminPasswordFile}; change it in the web UI)"
        echo
      } > ${consoleIssue}.new
      chmod 0644 ${consoleIssue}.new
      mv ${consoleIssue}.new ${consoleIssue}
      # Running gettys print the new text at their next prompt.
      agetty --reload || true
    '';
  };
}
