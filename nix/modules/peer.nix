# services.wiremesh.peers.<instance>: one peer agent per instance, several per machine.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  units = import ../lib/units.nix;
  cfg = config.services.wiremesh;
  enabled = lib.filterAttrs (_: p: p.enable) cfg.peers;
  configPath = name: "/etc/wiremesh/${name}.json";
in
{
  imports = [ ./common.nix ];

  options.services.wiremesh.peers = mkOption {
    default = { };
    description = "wiremesh peer agents, keyed by instance name.";
    type = types.attrsOf (types.submodule {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Whether to run the peer agent of this instance.";
        };
        configFile = mkOption {
          type = types.path;
          description = "The agent config written by `wiremesh plan` (`<machine>.json`); installed as /etc/wiremesh/<instance>.json.";
        };
        identityFile = mkOption {
          type = types.str;
          description = "The machine identity written by `wiremesh keygen` (a secret; handed to the agent with systemd's LoadCredential).";
        };
        netmapFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "A signed netmap from `wiremesh netmap build`; its members replace the config's peer list once it verifies.";
        };
        # no default: the config file holds the port, and a guess would open the wrong one
        port = mkOption {
          type = types.port;
          description = "The UDP port of the tunnel: the config's `listenPort`, opened in the firewall.";
        };
        openFirewall = mkOption {
          type = types.bool;
          default = true;
          description = "Whether to open the UDP port in the firewall.";
        };
        hostsFile = mkOption {
          type = types.nullOr types.path;
          default = null;
          description = "An /etc/hosts fragment from `wiremesh plan --hosts` (`<machine>.<instance>` for every member).";
        };
      };
    });
  };

  config = lib.mkIf (enabled != { }) {
    environment.etc = lib.mapAttrs'
      (name: p: lib.nameValuePair "wiremesh/${name}.json" { source = p.configFile; })
      enabled;

    systemd.services = lib.mapAttrs'
      (name: p: lib.nameValuePair "wiremesh-peer-${name}" (units.peer
        {
          inherit name;
          inherit (p) identityFile netmapFile;
          inherit (cfg) package;
          kill = "${pkgs.coreutils}/bin/kill";
          configPath = configPath name;
        } // {
        # a new config is applied by SIGHUP; only a new binary restarts the agent
        reloadTriggers = [ p.configFile ];
      }))
      enabled;

    networking.firewall.allowedUDPPorts = map (p: p.port) (builtins.filter (p: p.openFirewall) (builtins.attrValues enabled));
    networking.hostFiles = builtins.filter (f: f != null) (map (p: p.hostsFile) (builtins.attrValues enabled));
  };
}
