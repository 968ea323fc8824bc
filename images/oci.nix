# The OCI images oci-web and oci-worker (pkgs.dockerTools.buildLayeredImage, nixpkgs'
# pkgs/build-support/docker/default.nix): the prts package and its closure, one store
# path per layer so an upgrade pulls only what changed. No Nix at run time: the images
# hold store paths, not a store to build in.
#
# Both run as the unprivileged user prts (uid/gid 10001) with the data dir
# /var/lib/prts writable by it and a world-writable sticky /tmp. images/kubernetes runs
# them against external PostgreSQL, Redis, S3 and ClickHouse through PRTS_* variables;
# with none given they run on the embedded defaults in /var/lib/prts (mount a volume).
{ pkgs, prts }:

let
  inherit (pkgs) lib dockerTools;
  uid = "10001";

  # /etc/passwd and /etc/group with root and prts: git and Python's getpass want a name
  # for the running uid.
  accounts = pkgs.runCommand "prts-oci-accounts" { } ''
    mkdir -p $out/etc
    cat > $out/etc/passwd <<EOF
    root:x:0:0:root:/root:/bin/sh
    prts:x:${uid}:${uid}:PRTS:/var/lib/prts:/bin/sh
    nobody:x:65534:65534:nobody:/var/empty:/bin/false
    EOF
    cat > $out/etc/group <<EOF
    root:x:0:
    prts:x:${uid}:
    nobody:x:65534:
    EOF
  '';

  commonEnv = [
    "PRTS_DATA_DIR=/var/lib/prts"
    "HOME=/var/lib/prts"
    "TMPDIR=/tmp"
    "PATH=/bin"
    "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"
    "LANG=C.UTF-8"
  ];

  image =
    {
      name,
      command,
      config,
    }:
    dockerTools.buildLayeredImage {
      inherit name;
      tag = prts.version;
      contents = [
        prts
        accounts
        pkgs.git
        # Job steps on the local executor run /bin/sh -e -c with the tools a script expects.
        pkgs.coreutils
        dockerTools.binSh
        dockerTools.usrBinEnv
        dockerTools.caCertificates
      ];
      # Runs under fakeroot, so the ownership sticks in the layer.
      fakeRootCommands = ''
        mkdir -p tmp var/lib/prts
        chmod 1777 tmp
        chown ${uid}:${uid} var/lib/prts
        chmod 0750 var/lib/prts
      '';
      config = {
        User = "${uid}:${uid}";
        WorkingDir = "/var/lib/prts";
        Cmd = [ (lib.getExe prts) ] ++ command;
        Volumes."/var/lib/prts" = { };
      } // config;
    };
in
{
  web = image {
    name = "prts-web";
    command = [ "web" ];
    config = {
      Env = commonEnv ++ [ "PRTS_WEB_LISTEN=0.0.0.0:8080" ];
      ExposedPorts."8080/tcp" = { };
    };
  };

  # The Huey consumer finishes its running tasks on SIGINT and abandons them on SIGTERM.
  # docker, podman, containerd and CRI-O stop a container with its image's StopSignal
  # (images/kubernetes/base/worker-deployment.yaml relies on it).
  worker = image {
    name = "prts-worker";
    command = [ "worker" ];
    config = {
      Env = commonEnv;
      StopSignal = "SIGINT";
    };
  };
}
