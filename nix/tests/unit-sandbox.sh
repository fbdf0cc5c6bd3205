#!/usr/bin/env bash
# The peer unit's confinement, for real (root; network namespaces, no systemd): two agents run the
# way nix/lib/units.nix starts them (its User's stand-in nobody, exactly its capabilities as
# ambient and bounding set, no new privileges, the identity readable only by that user) behind
# NixOS's nftables firewall with the strict reverse-path filter and only the tunnel port open.
# They must reach each other over the mesh and answer `wiremesh status`, and a packet whose source
# does not route back must be dropped by that filter. Ends with `N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$PWD/target/debug
[ -x "$bin/wiremesh" ] && [ -x "$bin/wiremesh-peer" ] || { echo "$0: run cargo build first" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (network namespaces)" >&2; exit 1; }

tag=wmsb$$
work=$(mktemp -d /tmp/wiremesh-unit-sandbox.XXXXXX)
chmod 755 "$work"
declare -A pid_of=()
cleanup() {
  for p in "${pid_of[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$tag-a" 2>/dev/null || true
  ip netns del "$tag-b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

passed=0 failed=0
check() {
  if "${@:2}"; then echo "ok   $1"; passed=$((passed + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi
}

# The unit's capabilities, from the same Nix function the NixOS module uses.
unit=$(NIX_CONFIG="build-users-group =" nix-instantiate --eval --strict --json --expr '
  ((import ./nix/lib/units.nix).peer {
    name = "sb"; package = "/p"; kill = "/k"; identityFile = "/i"; netmapFile = null; configPath = "/c";
  }).serviceConfig')
caps() { python3 -c 'import json, sys; print(",".join("+" + c.removeprefix("CAP_").lower() for c in json.loads(sys.argv[1])[sys.argv[2]]))' "$unit" "$1"; }
ambient=$(caps AmbientCapabilities)
bounding=$(caps CapabilityBoundingSet)
no_new_privs=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["NoNewPrivileges"])' "$unit")
[ "$ambient" = "+net_admin" ] && [ "$bounding" = "+net_admin" ] && [ "$no_new_privs" = True ] ||
  { echo "$0: the unit changed ($ambient / $bounding / $no_new_privs); update this test" >&2; exit 1; }

# Keys, inventory and plan: two peers on a veth underlay in 198.18.0.0/15.
declare -A underlay=([a]=198.18.77.1 [b]=198.18.77.2)
for m in a b; do
  mkdir -p "$work/$m/state"
  "$bin/wiremesh" keygen --out "$work/$m/identity" >/dev/null
  for kind in wireguard node; do
    d=$work/vars/per-machine/$m/wiremesh-sb/$kind-public-key
    mkdir -p "$d" && "$bin/wiremesh" pubkey --$kind "$work/$m/identity" >"$d/value"
  done
  # as LoadCredential hands it over: readable by the service user only
  chown -R 65534:65534 "$work/$m"
  chmod 0400 "$work/$m/identity"
  chmod 0700 "$work/$m/state"
done
"$bin/wiremesh" keygen --network --out "$work/network.key" >/dev/null
mkdir -p "$work/vars/shared/wiremesh-network-sb/network-public-key"
"$bin/wiremesh" pubkey "$work/network.key" >"$work/vars/shared/wiremesh-network-sb/network-public-key/value"
cat >"$work/inventory.json" <<EOF
{ "machines": { "a": {}, "b": {} },
  "instances": { "sb": { "module": { "name": "wiremesh", "input": "wiremesh" },
    "roles": { "peer": { "machines": {
      "a": { "settings": { "endpoints": ["${underlay[a]}:51820"] } },
      "b": { "settings": { "endpoints": ["${underlay[b]}:51820"] } } } } } } } }
EOF
"$bin/wiremesh" plan --inventory "$work/inventory.json" --instance sb --keys "$work" \
  --out "$work/plan" --hosts "$work/plan/hosts" >/dev/null 2>&1
addr() { awk -v n="$1.sb" '$2 == n { print $1 }' "$work/plan/hosts"; }

ip netns add "$tag-a"
ip netns add "$tag-b"
ip link add "$tag-a" type veth peer name "$tag-b"
for m in a b; do
  ip link set "$tag-$m" netns "$tag-$m"
  ip -n "$tag-$m" link set lo up
  # the underlay is IPv4: no neighbour discovery from :: to land in the filter's drop counter
  ip netns exec "$tag-$m" sysctl -qw "net.ipv6.conf.$tag-$m.disable_ipv6=1"
  ip -n "$tag-$m" addr add "${underlay[$m]}/24" dev "$tag-$m"
  ip -n "$tag-$m" link set "$tag-$m" up
  # NixOS's firewall (networking.nftables, checkReversePath = true, allowPing) with the port the
  # module opens; the counter stands in for logReversePathDrops
  ip netns exec "$tag-$m" nft -f - <<'EOF'
table inet nixos-fw {
  chain rpfilter {
    type filter hook prerouting priority mangle + 10; policy drop;
    meta nfproto ipv4 udp sport . udp dport { 67 . 68, 68 . 67 } accept comment "DHCPv4 client/server"
    fib saddr . mark . iif oif exists accept
    counter comment "rpfilter drop"
  }
  chain input {
    type filter hook input priority filter; policy drop;
    iifname lo accept
    ct state vmap { invalid : drop, established : accept, related : accept, new : jump input-allow, untracked : jump input-allow }
  }
  chain input-allow {
    udp dport 51820 accept
    icmp type echo-request accept
    icmpv6 type != { nd-redirect, 139 } accept
  }
}
EOF
done

# /dev/net/tun is 0666 on NixOS (udev); here it may be root's only, so each agent gets a 0666 node
# of its own in a private mount namespace instead of a capability it would not have there. The
# same namespace gets its own /run with /run/wiremesh as the unit's RuntimeDirectory makes it
# (0700, the service user's), and the agent is given no --status-socket, as in the unit.
for m in a b; do
  ip netns exec "$tag-$m" unshare --mount --propagation private sh -ec '
    mkdir -p "$1/dev" && mount -t tmpfs -o mode=0755 none "$1/dev"
    mknod -m 0666 "$1/dev/tun" c 10 200 && mount --bind "$1/dev/tun" /dev/net/tun
    mount -t tmpfs -o mode=0755 none /run && mkdir -m 0700 /run/wiremesh && chown 65534:65534 /run/wiremesh
    exec setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs \
      --inh-caps=-all,"$2" --ambient-caps=-all,"$2" --bounding-set=-all,"$3" \
      "$4/wiremesh-peer" run --config "$1/plan/$5.json" --identity "$1/$5/identity" \
        --state-dir "$1/$5/state"' \
    sh "$work" "$ambient" "$bounding" "$bin" "$m" >"$work/$m.log" 2>&1 &
  pid_of[$m]=$!
done
# m's agent, in its mount namespace (where its /run is)
in_agent() { local m=$1; shift; nsenter --target "${pid_of[$m]}" --mount -- "$@"; }

up() {
  for _ in $(seq 50); do
    ip -n "$tag-$1" link show wm-sb >/dev/null 2>&1 && in_agent "$1" test -S /run/wiremesh/wm-sb.sock && return 0
    sleep 0.1
  done
  return 1
}
check "agent a up as nobody with only CAP_NET_ADMIN" up a
check "agent b up as nobody with only CAP_NET_ADMIN" up b

agent_caps() {
  local pid=${pid_of[$1]}
  grep -q "^Uid:	65534	65534	65534	65534$" "/proc/$pid/status" &&
    grep -q "^CapEff:	0000000000001000$" "/proc/$pid/status" &&
    grep -q "^CapBnd:	0000000000001000$" "/proc/$pid/status" &&
    grep -q "^NoNewPrivs:	1$" "/proc/$pid/status"
}
check "agent a: uid nobody, CapEff = CapBnd = CAP_NET_ADMIN, no new privileges" agent_caps a
check "agent b: uid nobody, CapEff = CapBnd = CAP_NET_ADMIN, no new privileges" agent_caps b

ping_mesh() { ip netns exec "$tag-$1" ping -6 -c 3 -i 0.2 -W 3 "$(addr "$2")" >/dev/null; }
check "a pings b over the mesh through the strict reverse-path filter" ping_mesh a b
check "b pings a over the mesh through the strict reverse-path filter" ping_mesh b a

# as an admin types it on the machine: no flags, the socket found in /run/wiremesh
status_ok() {
  local out
  out=$(in_agent a "$bin/wiremesh" status) &&
    grep -q "^member: b$" <<<"$out" && grep -q "latest handshake: .* ago" <<<"$out"
}
check "wiremesh status (root, no flags) finds and reads the unprivileged agent's socket" status_ok

# ExecReload: SIGHUP makes the unprivileged agent apply a new config (here the MTU) in place
reload_applies() {
  python3 - "$work/plan/a.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["mtu"] = 1380
json.dump(c, open(sys.argv[1], "w"))
PY
  kill -HUP "${pid_of[a]}"
  for _ in $(seq 50); do
    ip -n "$tag-a" link show wm-sb | grep -q " mtu 1380 " && return 0
    sleep 0.1
  done
  return 1
}
check "SIGHUP (the unit's ExecReload) applies a new config as the unprivileged user" reload_applies

drops() { ip netns exec "$tag-b" nft list chain inet nixos-fw rpfilter | sed -n 's/.*counter packets \([0-9]*\).*/\1/p'; }
spoof_dropped() {
  local before
  before=$(drops)
  ip -n "$tag-a" addr add 198.19.255.9/32 dev "$tag-a"
  ! ip netns exec "$tag-a" ping -c 1 -W 1 -I 198.19.255.9 "${underlay[b]}" >/dev/null &&
    [ "$(drops)" -gt "$before" ]
}
check "the filter is on: a source that does not route back is dropped" spoof_dropped

if [ "$failed" -gt 0 ]; then
  for m in a b; do echo "--- agent $m"; tail -n 20 "$work/$m.log"; done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
