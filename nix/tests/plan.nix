# What perInstance hands `wiremesh plan`, and what the real CLI renders from it at build time.
{ roles, readJSON, evalNixos, machineModules, ... }:
let
  planLib = import ../lib/plan.nix;
  inventory = planLib.inventory { instanceName = "my-vpn"; inherit roles; };

  # every file below a store path, relative to it
  filesBelow = dir:
    let
      go = rel: builtins.concatLists (builtins.attrValues (builtins.mapAttrs
        (n: type: let r = if rel == "" then n else "${rel}/${n}"; in if type == "directory" then go r else [ r ])
        (builtins.readDir (dir + (if rel == "" then "" else "/${rel}")))));
    in
    go "";

  laptop = evalNixos (machineModules "laptop");
  peer = laptop.services.wiremesh.peers.my-vpn;
in
{
  inventoryIsJustTheInstance = {
    expr = inventory;
    expected = readJSON ./expected/inventory.json;
  };

  publicVarsAreWhatPlanReads = {
    expr = planLib.publicVars { instanceName = "my-vpn"; inherit roles; };
    expected = [
      "vars/per-machine/desktop/wiremesh-my-vpn/wireguard-public-key/value"
      "vars/per-machine/desktop/wiremesh-my-vpn/node-public-key/value"
      "vars/per-machine/laptop/wiremesh-my-vpn/wireguard-public-key/value"
      "vars/per-machine/laptop/wiremesh-my-vpn/node-public-key/value"
      "vars/per-machine/server/wiremesh-my-vpn/wireguard-public-key/value"
      "vars/per-machine/server/wiremesh-my-vpn/node-public-key/value"
      "vars/shared/wiremesh-network-my-vpn/network-public-key/value"
    ];
  };

  # a controller that is no peer: agents pin its node key, so plan reads its public vars too
  publicVarsIncludeControllerOnlyMachines = {
    expr = planLib.publicVars {
      instanceName = "my-vpn";
      roles = { controller.machines.backup = { }; peer.machines.laptop = { }; };
    };
    expected = [
      "vars/per-machine/backup/wiremesh-my-vpn/wireguard-public-key/value"
      "vars/per-machine/backup/wiremesh-my-vpn/node-public-key/value"
      "vars/per-machine/laptop/wiremesh-my-vpn/wireguard-public-key/value"
      "vars/per-machine/laptop/wiremesh-my-vpn/node-public-key/value"
      "vars/shared/wiremesh-network-my-vpn/network-public-key/value"
    ];
  };

  # the store copy of the clan directory holds the public keys and no secret or other var
  onlyPublicKeysAreCopied = {
    expr = filesBelow (builtins.path {
      path = ./fixtures/clan;
      filter = planLib.keepOnly ./fixtures/clan (planLib.publicVars { instanceName = "my-vpn"; inherit roles; });
    });
    expected = [
      "vars/per-machine/desktop/wiremesh-my-vpn/node-public-key/value"
      "vars/per-machine/desktop/wiremesh-my-vpn/wireguard-public-key/value"
      "vars/per-machine/laptop/wiremesh-my-vpn/node-public-key/value"
      "vars/per-machine/laptop/wiremesh-my-vpn/wireguard-public-key/value"
      "vars/per-machine/server/wiremesh-my-vpn/node-public-key/value"
      "vars/per-machine/server/wiremesh-my-vpn/wireguard-public-key/value"
      "vars/shared/wiremesh-network-my-vpn/network-public-key/value"
    ];
  };

  # perInstance's config for the laptop, rendered by the real CLI, is byte for byte the agent
  # config the Rust tests pin for the same inventory and keys
  laptopConfigIsTheRustGolden = {
    expr = builtins.readFile peer.configFile;
    expected = builtins.readFile ../../crates/wiremesh-core/tests/agent-config.json;
  };

  # and the server's controller config is the one the Rust tests pin
  serverControllerConfigIsTheRustGolden = {
    expr = builtins.readFile (evalNixos (machineModules "server")).services.wiremesh.controllers.my-vpn.configFile;
    expected = builtins.readFile ../../crates/wiremesh-core/tests/controller-config.json;
  };

  hostsNameEveryMember = {
    expr = builtins.readFile peer.hostsFile;
    expected = builtins.readFile ./expected/hosts;
  };

  serverConfigHasBothRoles = {
    expr =
      let c = builtins.fromJSON (builtins.readFile (evalNixos (machineModules "server")).services.wiremesh.peers.my-vpn.configFile);
      in { inherit (c) machine roles controllers; peers = map (p: p.name) c.peers; };
    expected = {
      machine = "server";
      roles = [ "controller" "peer" ];
      controllers = [{ name = "server"; endpoint = "vpn.example.org:51821"; nodePublicKey = "1ppkC/fqPtMGZuGRadPxA5CXmLFF9UlJ1isZY18xW3g="; relayEndpoint = "vpn.example.org:51822"; }];
      peers = [ "desktop" "laptop" ];
    };
  };

}
