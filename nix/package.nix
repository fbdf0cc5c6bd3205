# All of the workspace's binaries (`wiremesh`, `wiremesh-peer`, and `wiremesh-controller` once it
# lands), versioned like Cargo.toml.
{ lib, rustPlatform }:
let
  cargo = builtins.fromTOML (builtins.readFile ../Cargo.toml);
  root = toString ../.;
  # the workspace members and what they include_str!; nothing else changes the build
  wanted = [ "Cargo.toml" "Cargo.lock" "crates" "tests" "netns-tests" "examples" ];
  top = path: builtins.head (builtins.filter builtins.isString
    (builtins.split "/" (builtins.substring (builtins.stringLength root + 1) (builtins.stringLength path) path)));
in
rustPlatform.buildRustPackage {
  pname = "wiremesh";
  inherit (cargo.workspace.package) version;
  src = builtins.path {
    name = "wiremesh-source";
    path = ../.;
    filter = path: _type: builtins.elem (top (toString path)) wanted;
  };
  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [ "--workspace" "--bins" ];
  # The tests run in CI (scripts/test-all); half of them need root and network namespaces, which
  # the build sandbox does not give.
  doCheck = false;
  meta = {
    description = "A mesh VPN for Clan: direct WireGuard tunnels between every member";
    license = with lib.licenses; [ mit asl20 ];
    mainProgram = "wiremesh";
    platforms = lib.platforms.linux;
  };
}
