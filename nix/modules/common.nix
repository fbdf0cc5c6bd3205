# What the peer and the controller modules share: the package and the system user.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.wiremesh;
  # each of peer.nix and controller.nix can be imported alone
  used = builtins.any (set: builtins.any (i: i.enable) (builtins.attrValues set)) [ (cfg.peers or { }) (cfg.controllers or { }) ];
  enabled = set: builtins.filter (i: i.enable) (builtins.attrValues set);
  # every UDP port the daemons bind: a tunnel port per peer, a control port and a relay port per
  # controller
  ports = map (p: p.port) (enabled (cfg.peers or { }))
    ++ builtins.concatMap (c: [ c.controlPort ] ++ lib.optional (c.relayPort != null) c.relayPort) (enabled (cfg.controllers or { }));
in
{
  options.services.wiremesh.package = lib.mkOption {
    type = lib.types.package;
    default = pkgs.callPackage ../package.nix { };
    defaultText = lib.literalExpression "pkgs.callPackage <wiremesh>/nix/package.nix { }";
    description = "The wiremesh package: `wiremesh`, `wiremesh-peer` and `wiremesh-controller`.";
  };

  config = lib.mkIf used {
    assertions = [
      {
        assertion = builtins.length ports == builtins.length (lib.unique ports);
        message = "services.wiremesh: peers and controllers on one machine each need a UDP port of their own; ports in use: ${builtins.toJSON ports}";
      }
      {
        # the units hold no CAP_NET_BIND_SERVICE
        assertion = builtins.all (p: p >= 1024) ports;
        message = "services.wiremesh: ports below 1024 cannot be bound by the daemons, which run without CAP_NET_BIND_SERVICE; ports in use: ${builtins.toJSON ports}";
      }
    ];
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
