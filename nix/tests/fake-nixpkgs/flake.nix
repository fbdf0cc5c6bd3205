{
  description = "Offline stand-in for nixpkgs: the stub lib; packages are argument records, not builds";
  outputs = { self }:
    let
      lib = import ./lib.nix;
      pkgs = {
        callPackage = f: args: import f ({ inherit lib; rustPlatform.buildRustPackage = a: a; } // args);
        stdenv.hostPlatform.system = "x86_64-linux";
      };
    in
    {
      lib = lib // { nixosSystem = _: throw "fake-nixpkgs: no NixOS offline"; };
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (system: pkgs // { stdenv.hostPlatform.system = system; });
    };
}
