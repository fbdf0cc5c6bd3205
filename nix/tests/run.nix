# Every test file is `{ <name> = { expr; expected; }; }`; expr and expected must be plain data.
{ wiremesh }:
let
  support = import ./support.nix { inherit wiremesh; };
  files = {
    interface = ./interface.nix;
    plan = ./plan.nix;
    modules = ./modules.nix;
    clan-service = ./clan-service.nix;
    flake = ./flake.nix;
  };
  all = builtins.concatLists (builtins.attrValues (builtins.mapAttrs
    (file: path:
      let tests = import path support;
      in map (n: { name = "${file}.${n}"; inherit (tests.${n}) expr expected; }) (builtins.attrNames tests))
    files));
  ok = t: t.expr == t.expected;
in
{
  passed = map (t: t.name) (builtins.filter ok all);
  failed = builtins.filter (t: !ok t) all;
}
