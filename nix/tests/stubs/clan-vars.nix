# The part of Clan's vars interface (nixosModules/clanCore/vars/interface.nix) that the modules
# use, so option names are checked offline; the real one is used in the clan-core evaluation.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  generator = { name, ... }:
    let gen = name;
    in {
      options = {
        share = mkOption { type = types.bool; default = false; };
        files = mkOption {
          default = { };
          type = types.attrsOf (types.submodule ({ name, ... }: {
            options = {
              secret = mkOption { type = types.bool; default = true; };
              deploy = mkOption { type = types.bool; default = true; };
              restartUnits = mkOption { type = types.listOf types.str; default = [ ]; };
              path = mkOption { type = types.str; default = "/run/secrets/vars/${gen}/${name}"; };
            };
          }));
        };
        runtimeInputs = mkOption { type = types.listOf types.package; default = [ ]; };
        script = mkOption { type = types.str; };
      };
    };
in
{
  options.clan.core.vars.generators = mkOption {
    default = { };
    type = types.attrsOf (types.submodule generator);
  };
}
