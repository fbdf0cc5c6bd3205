# The role interfaces against the JSON file the Rust resolver embeds: same names, types,
# defaults and descriptions (formats are checked in Rust, so the Nix types are plain `str`).
{ lib, readJSON, ... }:
let
  interface = import ../lib/interface.nix { inherit lib; };
  json = readJSON ../../crates/wiremesh-inventory/src/wiremesh-module.json;

  # a generated type, written back in the JSON file's grammar
  back = t:
    if t.name == "intBetween" then { type = "int"; inherit (t) min max; }
    else if t.name == "enum" then { type = "enum"; inherit (t) values; }
    else if t ? nested then { type = t.name; of = back t.nested; }
    else if t.name == "submodule" then { type = "submodule"; options = backOptions t.module.options; }
    else { type = t.name; };
  backOptions = builtins.mapAttrs (_: o:
    { type = back o.type; inherit (o) description; } // (if o ? default then { inherit (o) default; } else { }));

  noFormat = t: removeAttrs t [ "format" ]
    // (if t ? of then { of = noFormat t.of; } else { })
    // (if t ? options then { options = noFormats t.options; } else { });
  noFormats = builtins.mapAttrs (_: o: o // { type = noFormat o.type; });

  sameAsJson = role: {
    expr = backOptions (interface.interface role).options;
    expected = noFormats json.roles.${role}.interface;
  };
  throws = v: !(builtins.tryEval (builtins.deepSeq v v)).success;
in
{
  controllerIsTheJson = sameAsJson "controller";
  peerIsTheJson = sameAsJson "peer";
  # `endpoint` has no default in the JSON, so the Nix option is required
  endpointIsRequired = { expr = (interface.interface "controller").options.endpoint ? default; expected = false; };
  # a type the generator does not know is an error, not a silently looser option
  unknownTypeIsAnError = {
    expr = throws ((import ../lib/interface.nix {
      inherit lib;
      spec.roles.peer.interface.x = { type.type = "float"; description = "x"; };
    }).interface "peer");
    expected = true;
  };
}
