# The clan.service module as data, and what its perInstance/perMachine give each machine.
{ service, instance, evalNixos, machineModules, normalize, readJSON, runCommand, lib, clanLib, roles, ... }:
let
  json = readJSON ../../crates/wiremesh-inventory/src/wiremesh-module.json;
  generators = m: (evalNixos (machineModules m)).clan.core.vars.generators;
  generatorsOf = m: normalize (generators m);

  # `clan vars generate` done by hand: every generator's script run with $out, which must then
  # hold exactly the declared files (as Clan checks), stored in Clan's layout, public ones as `value`
  generate = out: gen: ''
    tmp=$(mktemp -d)
    (out=$tmp; ${gen.script})
    [ "$(ls -A "$tmp" | sort | tr '\n' ' ')" = "${builtins.concatStringsSep " " (builtins.attrNames gen.files)} " ]
    ${builtins.concatStringsSep "\n" (map (f: ''
      mkdir -p "${out}/${f}" && cp "$tmp/${f}" "${out}/${f}/${if gen.files.${f}.secret then "secret" else "value"}"
    '') (builtins.attrNames gen.files))}
  '';
  clanDir = runCommand "generated-clan" { nativeBuildInputs = (generators "server").wiremesh-my-vpn.runtimeInputs; } (builtins.concatStringsSep "\n"
    (map
      (m: generate "$out/vars/per-machine/${m}/wiremesh-my-vpn" (generators m).wiremesh-my-vpn)
      [ "server" "laptop" "desktop" ])
  + generate "$out/vars/shared/wiremesh-network-my-vpn" (generators "server").wiremesh-network-my-vpn);
  generated = import ../clan-service.nix {
    inherit lib clanLib;
    config = { manifest.name = "wiremesh"; instances.my-vpn = { }; };
    directory = builtins.path { path = clanDir; name = "generated-clan"; };
  };
  laptopConfig = evalNixos [
    (generated.roles.peer.perInstance {
      instanceName = "my-vpn";
      inherit roles;
      inherit (roles.peer.machines.laptop) settings;
      machine = { name = "laptop"; roles = [ "peer" ]; };
      mkExports = v: v;
    }).nixosModule
    (generated.perMachine { machine.name = "laptop"; instances.my-vpn.roles = roles; }).nixosModule
  ];
  readVar = rel: builtins.readFile "${clanDir}/vars/${rel}";
in
{
  manifest = {
    expr = {
      inherit (service) _class;
      inherit (service.manifest) name description categories exports constraints;
      readme = service.manifest.readme == builtins.readFile ../README.md;
    };
    expected = {
      _class = "clan.service";
      name = "wiremesh";
      inherit (json.manifest) description;
      categories = [ "Network" ];
      exports.out = [ "networking" "peer" ];
      constraints.roles.controller.minMachines = 1;
      readme = true;
    };
  };

  roles = {
    expr = builtins.mapAttrs (_: r: r.description) service.roles;
    expected = builtins.mapAttrs (_: r: r.description) json.roles;
  };

  # one networking export per instance, between zerotier (900) and wireguard (1000)
  networkingExport = {
    expr = service.exports;
    expected."wiremesh:my-vpn::".networking.priority = 950;
  };

  # `clan ssh laptop` can use laptop.my-vpn, which /etc/hosts on every member resolves
  peerHostsExport = {
    expr = (instance "peer" "laptop").exports;
    expected."wiremesh:my-vpn:peer:laptop".peer.hosts = [{ plain = "laptop.my-vpn"; }];
  };

  # the server (controller and peer) holds the shared network key, the laptop does not
  serverGeneratorsAreGolden = {
    expr = generatorsOf "server";
    expected = readJSON ./expected/generators-server.json;
  };

  laptopGeneratorsAreGolden = {
    expr = generatorsOf "laptop";
    expected = readJSON ./expected/generators-laptop.json;
  };

  # the identity restarts only units that run on the machine: a controller-only machine's controller
  controllerOnlyMachine = {
    expr = (normalize (evalNixos [
      (instance "controller" "server").nixosModule
      (service.perMachine {
        machine.name = "server";
        instances.my-vpn.roles.controller = (import ./fixtures/roles.nix).controller;
      }).nixosModule
    ])).clan.core.vars.generators.wiremesh-my-vpn.files.identity.restartUnits;
    expected = [ "wiremesh-controller-my-vpn.service" ];
  };

  # the generators' scripts, run, give vars that `wiremesh plan` turns into a config holding them
  generatedVarsArePlanned = {
    expr = let c = builtins.fromJSON (builtins.readFile laptopConfig.services.wiremesh.peers.my-vpn.configFile); in {
      network = c.networkPublicKey;
      server = builtins.head (builtins.filter (p: p.name == "server") c.peers);
      identityIsSecret = builtins.pathExists "${clanDir}/vars/per-machine/laptop/wiremesh-my-vpn/identity/secret";
    };
    expected = {
      network = builtins.replaceStrings [ "\n" ] [ "" ] (readVar "shared/wiremesh-network-my-vpn/network-public-key/value");
      server = {
        name = "server";
        wireguardPublicKey = builtins.replaceStrings [ "\n" ] [ "" ] (readVar "per-machine/server/wiremesh-my-vpn/wireguard-public-key/value");
        nodePublicKey = builtins.replaceStrings [ "\n" ] [ "" ] (readVar "per-machine/server/wiremesh-my-vpn/node-public-key/value");
        addresses = { ipv4 = null; ipv6 = "fd8c:65c0:2740:31b5:2523:5103:2c9b:3e7a"; };
        endpoints = [ "vpn.example.org:51820" ];
        routes = [ ];
        persistentKeepalive = 25;
      };
      identityIsSecret = true;
    };
  };
}
