#!/usr/bin/env bash
# Every Nix check that runs offline: each .nix file parses, deadnix and nixpkgs-fmt are clean, the
# flake's outputs evaluate through real flake machinery with nixpkgs replaced by the stand-in,
# and the unit tests pass (nix/tests/run.sh). Needs nix-instantiate, deadnix, nixpkgs-fmt and
# target/debug/wiremesh. Ends with one `N passed, N failed` line over all of them.
set -uo pipefail
cd "$(dirname "$0")/../.."
export NIX_CONFIG="experimental-features = nix-command flakes
build-users-group =
sandbox = false
substituters ="
passed=0 failed=0
check() {
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then
    echo "ok   $name"; passed=$((passed + 1))
  else
    echo "FAIL $name"; echo "$out" | sed 's/^/  /'; failed=$((failed + 1))
  fi
}

mapfile -t files < <(git ls-files -co --exclude-standard '*.nix')
check "parse (${#files[@]} files)" nix-instantiate --parse "${files[@]}"
check "deadnix" deadnix --fail --no-lambda-pattern-names "${files[@]}"
check "nixpkgs-fmt" nixpkgs-fmt --check "${files[@]}"

# A flake inside a git checkout sees only tracked files: evaluate a copy of the tracked and
# new files, without a lock file, nixpkgs overridden by the stand-in.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$tmp"
rm -f "$tmp/flake.lock"
flake_eval() {
  nix eval --offline --no-write-lock-file --json \
    --override-input nixpkgs "path:$tmp/nix/tests/fake-nixpkgs" "path:$tmp#$1" --apply "$2"
}
expect() {
  local want=$1; shift
  local got
  got=$("$@") || return 1
  [ "$got" = "$want" ] || { echo "expected $want, got $got"; return 1; }
}
check "flake: nixosModules" expect '["controller","default","peer"]' flake_eval nixosModules builtins.attrNames
check "flake: clan.modules" expect '["wiremesh"]' flake_eval clan.modules builtins.attrNames
check "flake: packages" expect '["default","wiremesh"]' flake_eval packages.aarch64-linux builtins.attrNames
check "flake: checks" expect '["nixos-peer","package"]' flake_eval checks.x86_64-linux builtins.attrNames
check "flake: formatter" expect '["aarch64-linux","x86_64-linux"]' flake_eval formatter builtins.attrNames
check "flake: package version" expect "\"$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml)\"" \
  flake_eval packages.x86_64-linux.default 'p: p.version'

units=$(nix/tests/run.sh 2>"$tmp/stderr")
status=$?
echo "$units" | grep -v '^[0-9]* passed, [0-9]* failed$'
summary=$(echo "$units" | tail -n 1)
if [[ $summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
  passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
  [ "$status" -eq 0 ] || [ "${BASH_REMATCH[2]}" -gt 0 ] || failed=$((failed + 1))
else
  echo "FAIL nix/tests/run.sh (no summary)"; sed 's/^/  /' "$tmp/stderr"; failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
