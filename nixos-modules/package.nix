# The prts Python application with its compiled C engines (appliance._native), built with
# nixpkgs' Python tooling. The flake's overlay exposes it as pkgs.prts, which is the
# default of services.prts.package.
#
# Call it with `pkgs.callPackage ./nixos-modules/package.nix { }`.
{
  lib,
  stdenv,
  python3Packages,
  fetchurl,
  autoPatchelfHook,
  unzip,
  git,
}:

let
  inherit (python3Packages) python;

  # One version, read where pip reads it, so the two can never disagree.
  pyproject = lib.importTOML ../pyproject.toml;

  # chdb (ClickHouse in-process, the embedded analytics backend) is not in nixpkgs, and
  # building ClickHouse from source is hours of C++; upstream's manylinux wheels are used
  # instead, patched for the Nix store by autoPatchelfHook. Since chdb 4, the pure-Python
  # `chdb` wheel and the binary `chdb-core` wheel both install into the one `chdb/`
  # package directory (pip overlays them), so they must land in one store path too: this
  # derivation installs chdb-core and unpacks chdb's files over it, exactly as pip does.
  # Versions and sha256 digests are those PyPI publishes for the files below.
  chdbVersion = "4.4.0";
  chdbCoreVersion = "26.9.0";
  chdbCoreWheels = {
    x86_64-linux = {
      url = "https://files.pythonhosted.org/packages/e2/60/543811d41d856a8a42b665d0e966d6ee518bc0b3cb487345acf812131ff0/chdb_core-${chdbCoreVersion}-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl";
      hash = "sha256-cH4uw/4PeVO6yXlC6ut6HtHWax5W7O8/CqITD2H25zU=";
    };
    aarch64-linux = {
      url = "https://files.pythonhosted.org/packages/9c/43/3f1b4e3c0eb9e5960b2273ba35d1a8291ead5bb109af79523ac5b950c65b/chdb_core-${chdbCoreVersion}-cp39-abi3-manylinux2014_aarch64.manylinux_2_17_aarch64.whl";
      hash = "sha256-RhSNP8Ht1tb3AZIr4PGOKqbmA0nkGLQw5pu7h6trlak=";
    };
  };
  chdbWheel = fetchurl {
    url = "https://files.pythonhosted.org/packages/5a/41/45159ab43d461ff3eff32611c5c9b8396ff5b89d71c5acfa7749b82f66aa/chdb-${chdbVersion}-py3-none-any.whl";
    hash = "sha256-udEVmxmhAaZQ5y4IVjHcw6CHnDH698CYv/PqUdu6La8=";
  };
  system = stdenv.hostPlatform.system;

  chdb = python3Packages.buildPythonPackage {
    pname = "chdb";
    version = chdbVersion;
    format = "wheel";
    src = fetchurl (
      chdbCoreWheels.${system}
        or (throw "prts: chdb publishes Linux wheels for ${lib.concatStringsSep " and " (lib.attrNames chdbCoreWheels)} only, not ${system}")
    );
    nativeBuildInputs = [
      autoPatchelfHook
      unzip
    ];
    # The wheel's libraries need only glibc and each other (auditwheel vendored the rest).
    buildInputs = [ (lib.getLib stdenv.cc.cc) ];
    dependencies = with python3Packages; [
      pandas
      pyarrow
    ];
    # Stripping a 550 MB vendor library gains nothing and risks breaking its tables.
    dontStrip = true;
    postInstall = ''
      unzip -o -q ${chdbWheel} -d "$out/${python.sitePackages}"
    '';
    pythonImportsCheck = [ "chdb.session" ];
    meta = {
      description = "ClickHouse in-process for Python (upstream's binary wheels)";
      homepage = "https://github.com/chdb-io/chdb";
      license = lib.licenses.asl20;
      sourceProvenance = [ lib.sourceTypes.binaryNativeCode ];
      platforms = lib.attrNames chdbCoreWheels;
    };
  };

  # flask-htmx joined nixpkgs late (2025); on a nixpkgs without it, the same release is
  # built from PyPI's wheel.
  flask-htmx =
    python3Packages.flask-htmx or (python3Packages.buildPythonPackage rec {
      pname = "flask-htmx";
      version = "0.4.0";
      format = "wheel";
      src = fetchurl {
        url = "https://files.pythonhosted.org/packages/3d/8e/7e75c2210567ba11df9ea7d031eb5b8f45e82f6112cc8be885cb0ce86c7d/flask_htmx-${version}-py3-none-any.whl";
        hash = "sha256-rA75dmOLxjVTekfErmIska7x5p2L9SiAqprg2wic59I=";
      };
      dependencies = [ python3Packages.flask ];
      pythonImportsCheck = [ "flask_htmx" ];
      meta.license = lib.licenses.mit;
    });

  # pyproject.toml's [project] dependencies, by nixpkgs attribute name. psycopg[binary]
  # is psycopg itself here: nixpkgs' psycopg is linked against its own libpq.
  dependencies = with python3Packages; [
    alembic
    argon2-cffi
    authlib
    cffi
    chdb
    clickhouse-driver
    click
    croniter
    cryptography
    flask
    flask-htmx
    flask-login
    flask-wtf
    gunicorn
    huey
    jsonschema
    ldap3
    minio
    prometheus-client
    pydantic
    pygments
    pyotp
    psycopg
    pyyaml
    redis
    requests
    sqlalchemy
    urllib3
    zxcvbn
  ];
in
python3Packages.buildPythonApplication {
  pname = pyproject.project.name;
  inherit (pyproject.project) version;
  pyproject = true;

  # Only what the wheel is built from: editing tests/, bench/ or docs/ does not rebuild
  # the package. README.md is in because pyproject.toml names it as the long description.
  # Build products of a developer's editable install (the .so next to the sources) stay out.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.difference (lib.fileset.unions [
      ../pyproject.toml
      ../setup.py
      ../README.md
      ../appliance
      ../webapp
      ../native
    ]) (lib.fileset.fileFilter (file: lib.any file.hasExt [ "so" "o" "pyc" ] || file.name == "_native.c") ../.);
  };

  # setup.py compiles native/src/*.c into appliance._native through cffi (native/build.py).
  build-system = with python3Packages; [
    setuptools
    wheel
    cffi
  ];

  inherit dependencies;

  makeWrapperArgs = [
    # The app shells out to git (hosting, checkouts, the smart HTTP backend).
    "--prefix"
    "PATH"
    ":"
    (lib.makeBinPath [ git ])
    # `prts up` and `prts web` start `sys.executable -m ...` children (the supervisor's
    # web and worker, gunicorn). sys.executable is the bare interpreter, which does not
    # see the site-packages the wrapper script adds to its own sys.path; PYTHONPATH hands
    # them down. Job steps do not inherit it: the local executor builds their environment
    # from scratch.
    "--prefix"
    "PYTHONPATH"
    ":"
    "${placeholder "out"}/${python.sitePackages}:${python3Packages.makePythonPath dependencies}"
  ];

  # The test suite needs real PostgreSQL, Redis, ClickHouse, ...; it runs as the flake's
  # checks.pytest, not in every build of the package.
  doCheck = false;
  pythonImportsCheck = [
    "appliance"
    "appliance._native"
    "webapp"
  ];

  passthru = {
    inherit chdb flask-htmx;
    # For environments that need the app's libraries beside others (the flake's devShell
    # and checks.pytest).
    pythonDependencies = dependencies;
  };

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.agpl3Plus;
    mainProgram = "prts";
    platforms = [
      "x86_64-linux"
      "aarch64-linux"
    ];
  };
}
