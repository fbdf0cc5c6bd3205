# The module inside real clan-core, with real nixpkgs lib: the inventory of examples/inventory.json
# written in Nix, resolved by clan-core's inventory code, each machine's nixosModule evaluated by
# real lib.evalModules with clan-core's real vars options. Needs checkouts of clan-lol/clan-core
# and nix-community/nixpkgs.lib, so it runs while developing (`run.sh --clan-core DIR --lib DIR`),
# not in CI.
{ wiremesh, clanCore, nixpkgsLib }:
let
  lib = import (nixpkgsLib + "/lib");
  support = import ./support.nix { inherit wiremesh; };
  base = import (clanCore + "/lib") { inherit lib; };
  clanSelf = {
    clanLib = lib.fix (lib.extends (_: _: { clan = import (clanCore + "/lib/clan") { inherit lib; clan-core = clanSelf; }; }) base.__unfix__);
    modules.clan.default = lib.modules.importApply (clanCore + "/modules/clan/default.nix") { clan-core = clanSelf; };
    clan.modules = { };
  };
  # a store path as a string, as Clan's default `directory = toString self` is
  directory = "${./fixtures/clan}";

  clan = instance: clanWith { my-vpn = instance; };
  clanWith = instances: (clanSelf.clanLib.clan {
    self.inputs.wiremesh.clan.modules.wiremesh = ../clan-service.nix;
    self.inputs.nixpkgs = { inherit lib; };
    inherit directory;
    meta.name = "example";
    inventory = {
      machines.server = { machineClass = "nixos"; deploy.targetHost = "root@vpn.example.org"; };
      machines.laptop.tags = [ "laptop" ];
      machines.desktop = { };
      instances = builtins.mapAttrs (_: i: { module.name = "wiremesh"; module.input = "wiremesh"; } // i) instances;
    };
  }).config;

  # what README.md tells a Clan user to write
  example = clan {
    roles.controller.machines.server = { settings.dynamicIp.enable = true; settings.endpoint = "vpn.example.org"; };
    roles.peer.tags = [ "all" ];
    roles.peer.machines.laptop = { };
    roles.peer.settings.ipRanges = [ "all" ];
  };
  service = c: c._services.allServices.wiremesh-wiremesh;

  inherit (lib) mkOption types;
  opt = type: default: mkOption { inherit type default; };
  # NixOS's declarations of the options the modules set, with real types
  nixosLike = machine: {
    options = {
      networking.firewall.allowedUDPPorts = opt (types.listOf types.port) [ ];
      networking.hostFiles = opt (types.listOf types.path) [ ];
      environment.etc = opt (types.attrsOf (types.submodule { options.source = mkOption { type = types.path; }; })) { };
      environment.systemPackages = opt (types.listOf types.package) [ ];
      users.users = opt (types.attrsOf (types.submodule { freeformType = types.attrsOf types.anything; })) { };
      users.groups = opt (types.attrsOf (types.submodule { })) { };
      assertions = opt (types.listOf (types.submodule { options.assertion = mkOption { type = types.bool; }; options.message = mkOption { type = types.str; }; })) [ ];
      warnings = opt (types.listOf types.str) [ ];
      systemd.services = opt
        (types.attrsOf (types.submodule {
          options = {
            description = mkOption { type = types.str; };
            wantedBy = opt (types.listOf types.str) [ ];
            wants = opt (types.listOf types.str) [ ];
            after = opt (types.listOf types.str) [ ];
            reloadTriggers = opt (types.listOf (types.either types.str types.path)) [ ];
            serviceConfig = opt (types.attrsOf (types.oneOf [ types.bool types.int types.str (types.listOf types.str) ])) { };
          };
        }))
        { };
      clan.core.settings.directory = mkOption { type = types.path; };
      clan.core.vars = mkOption {
        type = types.submodule {
          imports = [
            (clanCore + "/nixosModules/clanCore/vars/interface.nix")
            { inherit (support) pkgs; machineName = machine; }
          ];
        };
      };
    };
    config = {
      _module.args.pkgs = support.pkgs;
      clan.core.settings.directory = directory;
      # where sops-nix puts a secret, as clan-core's sops backend says (sops-nix itself is not here)
      clan.core.vars.settings.fileModule = file: {
        path = lib.mkIf file.config.secret "/run/secrets/vars/${file.config.rel_dir}/${file.config.name}";
      };
    };
  };
  nixos = c: machine: (lib.evalModules {
    modules = [ (nixosLike machine) (service c).result.final.${machine}.nixosModule ];
  }).config;
  machines = lib.genAttrs [ "server" "laptop" "desktop" ] (nixos example);
  configOf = m: builtins.fromJSON (builtins.readFile machines.${m}.services.wiremesh.peers.my-vpn.configFile);
  fails = v: !(builtins.tryEval (builtins.deepSeq v v)).success;

  tests = {
    exports = {
      expr = example.exports;
      expected = {
        "wiremesh:my-vpn::" = { networking = { module = "clan_lib.network.direct"; priority = 950; }; peer = null; };
      } // lib.genAttrs [ "wiremesh:my-vpn:peer:desktop" "wiremesh:my-vpn:peer:laptop" "wiremesh:my-vpn:peer:server" ] (key: {
        networking = null;
        peer = { SSHOptions = [ ]; hosts = [{ plain = "${lib.last (lib.splitString ":" key)}.my-vpn"; }]; name = "peer"; port = 22; user = null; };
      });
    };
    # clan-core turns both interfaces into JSON schemas (its assertion), and the schema has the options of the JSON file
    interfacesAreJsonSchemas = {
      expr = {
        assertions = lib.mapAttrs (_: a: a.assertion) (service example).result.assertions;
        peer = builtins.attrNames (service example).result.api.schema.peer."$defs".Input.properties;
        controllerRequired = (service example).result.api.schema.controller."$defs".Input.required;
      };
      expected = {
        assertions = { controller = true; peer = true; };
        peer = builtins.attrNames (support.readJSON ../../crates/wiremesh-inventory/src/wiremesh-module.json).roles.peer.interface;
        controllerRequired = [ "endpoint" ];
      };
    };
    # the roles Clan passes perInstance are those of fixtures/roles.nix, which the offline tests use
    settingsAsClanGivesThem = {
      expr = lib.genAttrs [ "server" "laptop" "desktop" ] (m: (configOf m).settings);
      expected = lib.genAttrs [ "server" "laptop" "desktop" ] (m:
        lib.mapAttrs (_: r: r.machines.${m}.settings) (lib.filterAttrs (_: r: r.machines ? ${m}) support.roles));
    };
    laptopConfigIsTheRustGolden = {
      expr = configOf "laptop";
      expected = support.readJSON ../../crates/wiremesh-core/tests/agent-config.json;
    };
    machines = {
      expr = lib.mapAttrs
        (_: c: {
          units = builtins.attrNames c.systemd.services;
          generators = lib.mapAttrs (_: g: { inherit (g) share; files = lib.mapAttrs (_: f: f.secret) g.files; }) c.clan.core.vars.generators;
          identity = c.services.wiremesh.peers.my-vpn.identityFile;
          controllers = lib.mapAttrs (_: k: { inherit (k) identityFile networkKeyFile controlPort relayPort; }) (c.services.wiremesh.controllers or { });
          ports = c.networking.firewall.allowedUDPPorts;
          hosts = builtins.readFile (builtins.head c.networking.hostFiles);
          assertions = builtins.all (a: a.assertion) c.assertions;
          inherit (c) warnings;
        })
        machines;
      expected = lib.mapAttrs
        (m: _: {
          units = lib.optional (m == "server") "wiremesh-controller-my-vpn" ++ [ "wiremesh-peer-my-vpn" ];
          generators = {
            wiremesh-my-vpn = { share = false; files = { identity = true; node-public-key = false; wireguard-public-key = false; }; };
          } // lib.optionalAttrs (m == "server") {
            wiremesh-network-my-vpn = { share = true; files = { network-private-key = true; network-public-key = false; }; };
          };
          identity = "/run/secrets/vars/per-machine/${m}/wiremesh-my-vpn/identity";
          controllers = lib.optionalAttrs (m == "server") {
            my-vpn = {
              identityFile = "/run/secrets/vars/per-machine/server/wiremesh-my-vpn/identity";
              networkKeyFile = "/run/secrets/vars/shared/wiremesh-network-my-vpn/network-private-key";
              controlPort = 51821;
              relayPort = 51822;
            };
          };
          ports = [ 51820 ] ++ lib.optionals (m == "server") [ 51821 51822 ];
          hosts = builtins.readFile ./expected/hosts;
          assertions = true;
          warnings = [ ];
        })
        machines;
    };
    noControllerIsAConstraintError = {
      expr = (service (clan { roles.peer.machines.laptop = { }; })).result.cliChecks;
      expected = [{
        id = "wiremesh-my-vpn-controller-minMachines";
        message = "Role 'controller' of service 'wiremesh' instance 'my-vpn' requires at least 1 machine(s) but 0 are assigned.";
        severity = "error";
      }];
    };
    # a second instance on the same machines: its own units, generators, configs and port
    twoInstances =
      let
        two = clanWith {
          my-vpn = { roles.controller.machines.server.settings.endpoint = "vpn.example.org"; roles.peer.tags = [ "all" ]; };
          lab = {
            roles.controller.machines.server.settings = { endpoint = "vpn.example.org"; controlPort = 51831; relay.port = 51832; };
            roles.peer.machines = { server = { }; laptop = { }; };
            roles.peer.settings.port = 51830;
          };
        };
        server = nixos two "server";
        laptop = nixos two "laptop";
      in
      {
        expr = {
          server = builtins.attrNames server.systemd.services;
          serverPorts = lib.sort (a: b: a < b) server.networking.firewall.allowedUDPPorts;
          laptop = builtins.attrNames laptop.systemd.services;
          laptopGenerators = builtins.attrNames laptop.clan.core.vars.generators;
          laptopEtc = builtins.attrNames laptop.environment.etc;
          laptopHosts = lib.sort (a: b: a < b) (map (f: builtins.head (builtins.match ".*-wiremesh-(.*)-plan/hosts" f)) laptop.networking.hostFiles);
          desktop = builtins.attrNames (nixos two "desktop").systemd.services;
          assertions = builtins.all (a: a.assertion) server.assertions;
        };
        expected = {
          server = [ "wiremesh-controller-lab" "wiremesh-controller-my-vpn" "wiremesh-peer-lab" "wiremesh-peer-my-vpn" ];
          serverPorts = [ 51820 51821 51822 51830 51831 51832 ];
          laptop = [ "wiremesh-peer-lab" "wiremesh-peer-my-vpn" ];
          laptopGenerators = [ "wiremesh-lab" "wiremesh-my-vpn" ];
          laptopEtc = [ "wiremesh/lab.json" "wiremesh/my-vpn.json" ];
          laptopHosts = [ "lab" "my-vpn" ];
          desktop = [ "wiremesh-peer-my-vpn" ];
          assertions = true;
        };
      };
    misspelledSettingIsAnError = {
      expr = fails (nixos (clan { roles.controller.machines.server.settings.endpont = "x"; roles.peer.machines.laptop = { }; }) "laptop").services.wiremesh.peers.my-vpn.configFile;
      expected = true;
    };
  };
  all = lib.mapAttrsToList (name: t: { name = "clan-core.${name}"; inherit (t) expr expected; }) tests;
in
{
  passed = map (t: t.name) (builtins.filter (t: t.expr == t.expected) all);
  failed = builtins.filter (t: t.expr != t.expected) all;
}
