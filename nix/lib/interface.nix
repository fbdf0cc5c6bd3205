# The role interfaces as NixOS options, generated from the one definition that the Rust resolver
# embeds too (crates/wiremesh-inventory/src/wiremesh-module.json), so the two cannot drift.
{ lib
, spec ? builtins.fromJSON (builtins.readFile ../../crates/wiremesh-inventory/src/wiremesh-module.json)
}:
let
  inherit (lib) types;

  # `format` is checked by the Rust resolver when `wiremesh plan` runs; the Nix type stays `str`
  # so that Clan can turn it into a JSON schema.
  toType = path: t:
    if t.type == "str" then types.str
    else if t.type == "bool" then types.bool
    else if t.type == "port" then types.port
    else if t.type == "int" && t ? min && t ? max then types.ints.between t.min t.max
    else if t.type == "int" && !(t ? min) && !(t ? max) then types.int
    else if t.type == "enum" then types.enum t.values
    else if t.type == "nullOr" then types.nullOr (toType path t.of)
    else if t.type == "listOf" then types.listOf (toType path t.of)
    else if t.type == "attrsOf" then types.attrsOf (toType path t.of)
    else if t.type == "submodule" then types.submodule { options = toOptions path t.options; }
    else throw "wiremesh-module.json: ${path}: type ${builtins.toJSON t} has no Nix counterpart here";

  toOption = path: o:
    lib.mkOption ({ type = toType path o.type; inherit (o) description; }
      // (if o ? default then { inherit (o) default; } else { }));

  toOptions = path: builtins.mapAttrs (name: toOption "${path}.${name}");
in
{
  inherit spec;
  # The `interface` module of role `role`.
  interface = role: {
    options = toOptions "roles.${role}.interface" spec.roles.${role}.interface;
  };
}
