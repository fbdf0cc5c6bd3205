# The flake's outputs, called directly with the offline nixpkgs stand-in (no lock, no fetch).
{ lib, ... }:
let
  flake = import ../../flake.nix;
  fakeNixpkgs = (import ./fake-nixpkgs/flake.nix).outputs { self = fakeNixpkgs; };
  self = outputs // { outPath = toString ../..; };
  outputs = flake.outputs { inherit self; nixpkgs = fakeNixpkgs; };
  cargo = builtins.fromTOML (builtins.readFile ../../Cargo.toml);
  package = outputs.packages.x86_64-linux.default;
  sourceTop = builtins.attrNames (builtins.readDir package.src);
in
{
  outputs = {
    expr = builtins.mapAttrs (_: builtins.attrNames) outputs;
    expected = {
      checks = [ "aarch64-linux" "x86_64-linux" ];
      clan = [ "modules" ];
      formatter = [ "aarch64-linux" "x86_64-linux" ];
      nixosModules = [ "controller" "default" "peer" ];
      packages = [ "aarch64-linux" "x86_64-linux" ];
    };
  };

  perSystem = {
    expr = {
      packages = builtins.attrNames outputs.packages.aarch64-linux;
      checks = builtins.attrNames outputs.checks.x86_64-linux;
    };
    expected = { packages = [ "default" "wiremesh" ]; checks = [ "nixos-peer" "package" ]; };
  };

  modulesAreTheFiles = {
    expr = with outputs; [
      (nixosModules.peer == ../modules/peer.nix)
      (nixosModules.controller == ../modules/controller.nix)
      (nixosModules.default == ../modules/default.nix)
      (clan.modules.wiremesh == ../clan-service.nix)
    ];
    expected = [ true true true true ];
  };

  packageFollowsCargoToml = {
    expr = {
      inherit (package) pname version cargoBuildFlags doCheck;
      lockFile = package.cargoLock.lockFile == ../../Cargo.lock;
      inherit (package.meta) mainProgram license;
    };
    expected = {
      pname = "wiremesh";
      inherit (cargo.workspace.package) version;
      cargoBuildFlags = [ "--workspace" "--bins" ];
      doCheck = false;
      lockFile = true;
      mainProgram = "wiremesh";
      license = [ lib.licenses.mit lib.licenses.asl20 ];
    };
  };

  # the build sees the workspace and what it includes, not nix/ or the docs
  packageSource = {
    expr = sourceTop;
    expected = [ "Cargo.lock" "Cargo.toml" "crates" "examples" "netns-tests" "tests" ];
  };
}
