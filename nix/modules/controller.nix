# services.wiremesh.controllers.<instance>: one controller per instance, several per machine.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  units = import ../lib/units.nix;
  cfg = config.services.wiremesh;
  enabled = lib.filterAttrs (_: c: c.enable) cfg.controllers;
  configPath = name: "/etc/wiremesh/${name}.controller.json";
in
{
  imports = [ ./common.nix ];

  options.services.wiremesh.controllers = mkOption {
    default = { };
    description = "wiremesh controllers, keyed by instance name.";
    type = types.attrsOf (types.submodule {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Whether to run the controller of this instance.";
        };
        configFile = mkOption {
          type = types.path;
          description = "The controller config (`<machine>.controller.json`); installed as /etc/wiremesh/<instance>.controller.json.";
        };
        identityFile = mkOption {
          type = types.str;
          description = "The machine identity written by `wiremesh keygen` (a secret, handed over by LoadCredential).";
        };
        networkKeyFile = mkOption {
          type = types.str;
          description = "The network key written by `wiremesh keygen --network` (a secret, handed over by LoadCredential).";
        };
        controlPort = mkOption {
          type = types.port;
          default = 51821;
          description = "The UDP port of the control plane (QUIC), opened in the firewall.";
        };
        relayPort = mkOption {
          type = types.nullOr types.port;
          default = 51822;
          description = "The UDP port of the endpoint probes and the relay (the config's `relay.port`), opened in the firewall; null when the config turns the relay off.";
        };
        openFirewall = mkOption {
          type = types.bool;
          default = true;
          description = "Whether to open the control port and the relay port in the firewall.";
        };
      };
    });
  };

  config = lib.mkIf (enabled != { }) {
    environment.etc = lib.mapAttrs'
      (name: c: lib.nameValuePair "wiremesh/${name}.controller.json" { source = c.configFile; })
      enabled;

    systemd.services = lib.mapAttrs'
      (name: c: lib.nameValuePair "wiremesh-controller-${name}" (units.controller
        {
          inherit name;
          inherit (c) identityFile networkKeyFile;
          inherit (cfg) package;
          kill = "${pkgs.coreutils}/bin/kill";
          configPath = configPath name;
        } // {
        reloadTriggers = [ c.configFile ];
        # the daemon applies a new config by reload, but binds the relay's port only at start
        restartTriggers = [ (builtins.toJSON c.relayPort) ];
      }))
      enabled;

    networking.firewall.allowedUDPPorts = builtins.concatMap (c: [ c.controlPort ] ++ lib.optional (c.relayPort != null) c.relayPort)
      (builtins.filter (c: c.openFirewall) (builtins.attrValues enabled));
  };
}
