# The bootable ISO of the appliance: image.modules.iso in images/appliance.nix, built by
# nixpkgs' nixos/modules/installer/cd-dvd/iso-image.nix (nixos/lib/make-iso9660-image.nix).
# It is a live system, not an installer: it boots straight into the same configuration as
# the VM image, with the appliance running. The root file system is a tmpfs over the
# squashed Nix store, so repositories, runs and the database live in RAM and are gone at
# the next boot; give the machine 4 GB or more, and use the VM image to keep data.
{ lib, ... }:

{
  isoImage = {
    makeEfiBootable = true;
    makeUsbBootable = true;
    appendToMenuLabel = " PRTS appliance (live)";
    # zstd squashes faster than the default xz and unpacks faster at boot.
    squashfsCompression = "zstd -Xcompression-level 15";
  };
  image.baseName = lib.mkDefault "prts-appliance";

  boot.kernelParams = [
    "console=tty0"
    "console=ttyS0,115200"
  ];
}
