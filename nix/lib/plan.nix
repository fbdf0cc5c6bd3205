# What the Nix side hands `wiremesh plan`: builtins only, so the offline tests can call it. The
# planning itself (addresses, keys, peer lists) happens in Rust.
let
  members = roles: builtins.attrNames (builtins.foldl' (acc: r: acc // r.machines) { } (builtins.attrValues roles));
in
{
  # An inventory holding just this instance, from perInstance's `roles` argument, whose settings
  # are already final: the resolver re-applies the defaults and checks the formats.
  inventory = { instanceName, roles }: {
    machines = builtins.listToAttrs (map (name: { inherit name; value = { }; }) (members roles));
    instances.${instanceName} = {
      module = { name = "wiremesh"; input = "wiremesh"; };
      roles = builtins.mapAttrs
        (_: role: { machines = builtins.mapAttrs (_: m: { inherit (m) settings; }) role.machines; })
        roles;
    };
  };

  # The public vars `wiremesh plan --keys` reads for this instance, relative to the clan
  # directory: the two public keys of every machine in it (agents pin a controller's node key,
  # also one that is no peer) and the network public key.
  publicVars = { instanceName, roles }:
    builtins.concatMap
      (m: map (f: "vars/per-machine/${m}/wiremesh-${instanceName}/${f}/value")
        [ "wireguard-public-key" "node-public-key" ])
      (members roles)
    ++ [ "vars/shared/wiremesh-network-${instanceName}/network-public-key/value" ];

  # A `builtins.path` filter keeping exactly `files` (relative to `root`) and their directories,
  # so the store copy changes only when one of those files does, and secrets are never copied.
  keepOnly = root: files:
    let
      prefix = toString root + "/";
      dirsOf = f:
        let parts = builtins.filter builtins.isString (builtins.split "/" f);
        in builtins.genList (n: builtins.concatStringsSep "/" (builtins.genList (builtins.elemAt parts) (n + 1))) (builtins.length parts - 1);
      keep = builtins.listToAttrs (map (name: { inherit name; value = true; }) (files ++ builtins.concatMap dirsOf files));
    in
    path: _type:
      let p = toString path;
      in keep ? ${builtins.substring (builtins.stringLength prefix) (builtins.stringLength p) p};
}
