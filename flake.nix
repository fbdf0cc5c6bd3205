{
  description = "wiremesh: a mesh VPN in Rust, delivered as a Clan service";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        wiremesh = pkgs.callPackage ./nix/package.nix { };
        default = wiremesh;
      });

      nixosModules = {
        peer = ./nix/modules/peer.nix;
        controller = ./nix/modules/controller.nix;
        default = ./nix/modules/default.nix;
      };

      clan.modules.wiremesh = ./nix/clan-service.nix;

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        # a NixOS system with one agent: the module against the real option set
        nixos-peer = (nixpkgs.lib.nixosSystem {
          modules = [
            self.nixosModules.default
            {
              nixpkgs.hostPlatform = pkgs.stdenv.hostPlatform.system;
              boot.isContainer = true;
              system.stateVersion = "25.11";
              services.wiremesh.package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
              services.wiremesh.peers.my-vpn = {
                configFile = ./crates/wiremesh-core/tests/agent-config.json;
                identityFile = "/run/secrets/wiremesh-identity";
                port = 51820;
              };
            }
          ];
        }).config.system.build.toplevel;
      });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
