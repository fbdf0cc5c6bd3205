# What every test file shares: the stub lib, stand-ins for the few packages the modules use, and
# the real wiremesh binary (built by cargo) as a package, so rendering runs the real CLI.
{ wiremesh }:
rec {
  lib = import ./fake-nixpkgs/lib.nix;

  # derivations built with /bin/sh (Nix here has no stdenv); `nativeBuildInputs` go on PATH
  runCommand = name: env: script: derivation (removeAttrs env [ "nativeBuildInputs" ] // {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-ec" script ];
    PATH = builtins.concatStringsSep ":" (map (p: "${p}/bin") (env.nativeBuildInputs or [ ]) ++ [ "/usr/bin" "/bin" ]);
  });

  # the binary under test, copied into the store by content so a rebuild is seen
  package = runCommand "wiremesh-0.1.0" { bin = builtins.path { path = wiremesh; name = "wiremesh"; }; } ''
    mkdir -p "$out/bin" && ln -s "$bin" "$out/bin/wiremesh"
  '';

  pkgs = {
    inherit runCommand;
    writeText = builtins.toFile;
    coreutils = "/nix/store/00000000000000000000000000000000-coreutils";
    callPackage = _: _: package;
  };

  clanLib.buildScopeKey = { serviceName, instanceName ? "", roleName ? "", machineName ? "" }:
    "${serviceName}:${instanceName}:${roleName}:${machineName}";

  evalNixos = modules: (lib.evalModules {
    modules = [ ./stubs/clan-vars.nix ] ++ modules;
    specialArgs = { inherit pkgs; };
  }).config;

  # the clan.service module as Clan instantiates it, for instance my-vpn of examples/inventory.json
  service = import ../clan-service.nix {
    inherit lib clanLib;
    config = { manifest.name = "wiremesh"; instances.my-vpn = { }; };
    directory = ./fixtures/clan;
  };
  roles = import ./fixtures/roles.nix;

  # a machine's perInstance result for `role`
  instance = role: machine: service.roles.${role}.perInstance {
    instanceName = "my-vpn";
    inherit roles;
    settings = roles.${role}.machines.${machine}.settings;
    machine = { name = machine; roles = builtins.filter (r: roles.${r}.machines ? ${machine}) (builtins.attrNames roles); };
    mkExports = v: { "wiremesh:my-vpn:${role}:${machine}" = v; };
  };

  # everything Clan gives machine `m` of my-vpn: its roles' perInstance modules and perMachine's
  machineModules = m:
    map (r: (instance r m).nixosModule) (builtins.filter (r: roles.${r}.machines ? ${m}) (builtins.attrNames roles))
    ++ [
      (service.perMachine { machine = { name = m; }; instances.my-vpn.roles = roles; }).nixosModule
    ];

  readJSON = f: builtins.fromJSON (builtins.readFile f);

  # store hashes depend on the binary and the system; golden files say /nix/store/<hash>-name
  normalize = v: builtins.fromJSON (builtins.concatStringsSep "" (map
    (x: if builtins.isList x then "/nix/store/<hash>-" else x)
    (builtins.split "/nix/store/[0-9a-z]{32}-" (builtins.unsafeDiscardStringContext (builtins.toJSON v)))));
}
