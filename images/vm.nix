# The qcow2 VM image of the appliance: image.modules.qemu (x86_64, legacy BIOS boot) and
# image.modules.qemu-efi (aarch64) in images/appliance.nix. nixpkgs' disk-image module
# (nixos/modules/virtualisation/disk-image.nix, built by nixos/lib/make-disk-image.nix)
# makes the disk: an ext4 root labelled "nixos" that grows to the virtual disk's size at
# boot (boot.growPartition), so a small image can be given a bigger disk with
# `qemu-img resize`.
{ lib, modulesPath, ... }:

{
  # virtio drivers in the initrd, the QEMU guest agent.
  imports = [ (modulesPath + "/profiles/qemu-guest.nix") ];
  services.qemuGuest.enable = true;

  # Room for the system closure (chdb alone is ~0.6 GB) plus first repositories and logs.
  virtualisation.diskSize = lib.mkDefault (8 * 1024);
  image.baseName = lib.mkDefault "prts-appliance";

  # A serial console too, so `qemu -nographic` shows the boot and the login prompt with
  # the administrator's initial password.
  boot.kernelParams = [
    "console=tty0"
    "console=ttyS0,115200"
  ];
}
