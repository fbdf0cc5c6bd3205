# What the peer and the controller modules share: the package and the system user.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.wiremesh;
  # each of peer.nix and controller.nix can be imported alone
  used = builtins.any (set: builtins.any (i: i.enable) (builtins.attrValues set)) [ (cfg.peers or { }) (cfg.controllers or { }) ];
in
{
  options.services.wiremesh.package = lib.mkOption {
    type = lib.types.package;
    default = pkgs.callPackage ../package.nix { };
    defaultText = lib.literalExpression "pkgs.callPackage <wiremesh>/nix/package.nix { }";
    description = "The wiremesh package: `wiremesh`, `wiremesh-peer` and `wiremesh-controller`.";
  };

  config = lib.mkIf used {
    users.users.wiremesh = {
      isSystemUser = true;
      group = "wiremesh";
      description = "wiremesh daemons";
    };
    users.groups.wiremesh = { };
    # `wiremesh status` and the other admin commands
    environment.systemPackages = [ cfg.package ];
  };
}
