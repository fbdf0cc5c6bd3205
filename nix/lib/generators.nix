# The Clan vars generators (builtins only, compared with golden files offline). Both run the Rust
# CLI; the public files are exactly what `wiremesh plan --keys` reads.
{
  # Per machine and instance: the identity (secret) and its two public keys.
  machine = { package, restartUnits }: {
    files.identity = { secret = true; inherit restartUnits; };
    files.wireguard-public-key.secret = false;
    files.node-public-key.secret = false;
    runtimeInputs = [ package ];
    script = ''
      wiremesh keygen --out "$out/identity" >/dev/null
      wiremesh pubkey --wireguard "$out/identity" >"$out/wireguard-public-key"
      wiremesh pubkey --node "$out/identity" >"$out/node-public-key"
    '';
  };

  # Shared per instance: the network key, declared only on controllers, so only they receive it.
  network = { package, restartUnits }: {
    share = true;
    files.network-private-key = { secret = true; inherit restartUnits; };
    files.network-public-key.secret = false;
    runtimeInputs = [ package ];
    script = ''
      wiremesh keygen --network --out "$out/network-private-key" >/dev/null
      wiremesh pubkey "$out/network-private-key" >"$out/network-public-key"
    '';
  };
}
