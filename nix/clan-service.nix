# The clan.service module `wiremesh`: roles `controller` and `peer`. Thin on purpose: the role
# interfaces come from the Rust resolver's JSON, and every config is rendered by `wiremesh plan`.
{ lib, clanLib, config, directory, ... }:
let
  interface = import ./lib/interface.nix { inherit lib; };
  planLib = import ./lib/plan.nix;
  generators = import ./lib/generators.nix;
  inherit (interface) spec;

  # Every member's agent config, every controller's config and the hosts fragment of one
  # instance, by `wiremesh plan` at build time from the members' settings and their public vars in
  # the clan directory.
  render = { pkgs, package, instanceName, roles }:
    let
      inventory = pkgs.writeText "wiremesh-${instanceName}-inventory.json"
        (builtins.toJSON (planLib.inventory { inherit instanceName roles; }));
      keys = builtins.path {
        name = "wiremesh-${instanceName}-public-vars";
        path = directory;
        filter = planLib.keepOnly directory (planLib.publicVars { inherit instanceName roles; });
      };
    in
    pkgs.runCommand "wiremesh-${instanceName}-plan" { nativeBuildInputs = [ package ]; } ''
      wiremesh plan --inventory ${inventory} --instance ${lib.escapeShellArg instanceName} \
        --keys ${keys} --out "$out" --hosts "$out/hosts"
    '';
in
{
  _class = "clan.service";
  manifest = {
    inherit (spec.manifest) name description;
    categories = [ "Network" ];
    readme = builtins.readFile ./README.md;
    exports.out = [ "networking" "peer" ];
    constraints.roles.controller.minMachines = 1;
  };

  # `clan ssh` tries networks by descending priority: wiremesh sits between zerotier (900) and
  # Clan's wireguard (1000).
  exports = lib.mapAttrs'
    (instanceName: _: {
      name = clanLib.buildScopeKey { inherit instanceName; serviceName = config.manifest.name; };
      value.networking.priority = 950;
    })
    config.instances;

  roles.controller = {
    inherit (spec.roles.controller) description;
    interface = interface.interface "controller";
    perInstance = { instanceName, settings, roles, machine, ... }: {
      nixosModule = { config, pkgs, ... }:
        let
          rendered = render {
            inherit pkgs instanceName roles;
            inherit (config.services.wiremesh) package;
          };
          vars = config.clan.core.vars.generators;
        in
        {
          imports = [ ./modules/controller.nix ];
          clan.core.vars.generators."wiremesh-network-${instanceName}" = generators.network {
            inherit (config.services.wiremesh) package;
            restartUnits = [ "wiremesh-controller-${instanceName}.service" ];
          };
          services.wiremesh.controllers.${instanceName} = {
            configFile = "${rendered}/${machine.name}.controller.json";
            identityFile = vars."wiremesh-${instanceName}".files.identity.path;
            networkKeyFile = vars."wiremesh-network-${instanceName}".files.network-private-key.path;
            inherit (settings) controlPort;
            relayPort = if settings.relay.enable then settings.relay.port else null;
          };
        };
    };
  };

  roles.peer = {
    inherit (spec.roles.peer) description;
    interface = interface.interface "peer";
    perInstance = { instanceName, settings, roles, machine, mkExports, ... }: {
      exports = mkExports { peer.hosts = [{ plain = "${machine.name}.${instanceName}"; }]; };
      nixosModule = { config, pkgs, ... }:
        let
          rendered = render {
            inherit pkgs instanceName roles;
            inherit (config.services.wiremesh) package;
          };
        in
        {
          imports = [ ./modules/peer.nix ];
          services.wiremesh.peers.${instanceName} = {
            configFile = "${rendered}/${machine.name}.json";
            hostsFile = "${rendered}/hosts";
            identityFile = config.clan.core.vars.generators."wiremesh-${instanceName}".files.identity.path;
            inherit (settings) port;
          };
        };
    };
  };

  # The machine identity of every instance the machine is in, whatever its roles.
  perMachine = { instances, machine, ... }: {
    nixosModule = { config, ... }: {
      imports = [ ./modules/common.nix ];
      clan.core.vars.generators = lib.mapAttrs'
        (instanceName: instance: lib.nameValuePair "wiremesh-${instanceName}" (generators.machine {
          inherit (config.services.wiremesh) package;
          restartUnits = builtins.concatMap
            (role: lib.optional (instance.roles.${role}.machines or { } ? ${machine.name}) "wiremesh-${role}-${instanceName}.service")
            [ "controller" "peer" ];
        }))
        instances;
    };
  };
}
