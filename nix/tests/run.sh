#!/usr/bin/env bash
# The Nix unit tests: perInstance, the NixOS modules, the generators, the flake outputs, with the
# stub lib, and the configs rendered by the real `wiremesh plan` (target/debug/wiremesh, built by
# cargo before). Ends with the `N passed, N failed` line.
#
#   run.sh                                   the offline tests (CI)
#   run.sh --clan-core DIR --nixpkgs-lib DIR the module inside real clan-core and real nixpkgs lib
#                                            (checkouts of clan-lol/clan-core, nix-community/nixpkgs.lib)
set -euo pipefail
cd "$(dirname "$0")/../.."
tests=(nix/tests/run.nix)
if [ "${1-}" = --clan-core ] && [ "${3-}" = --nixpkgs-lib ] && [ $# -eq 4 ]; then
  tests=(--arg clanCore "$(realpath "$2")" --arg nixpkgsLib "$(realpath "$4")" nix/tests/clan-core.nix)
elif [ $# -ne 0 ]; then
  echo "usage: $0 [--clan-core DIR --nixpkgs-lib DIR]" >&2; exit 2
fi
bin=${WIREMESH_BIN:-$PWD/target/debug/wiremesh}
[ -x "$bin" ] || { echo "nix/tests/run.sh: $bin is missing; run cargo build first" >&2; exit 1; }
# Debian's nix-bin without nix-setup-systemd has no nixbld group: build as root, unsandboxed
export NIX_CONFIG="build-users-group =
sandbox = false
substituters ="
# non-zero on any evaluation error, so a broken test never counts as passed; --read-write-mode
# because reading a rendered config builds its derivation during evaluation
out=$(nix-instantiate --eval --read-write-mode --strict --json --argstr wiremesh "$bin" "${tests[@]}")
python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
for n in r["passed"]:
    print(f"ok   {n}")
for t in r["failed"]:
    print(f"FAIL {t['name']}")
    print(f"  expected: {json.dumps(t['expected'], sort_keys=True)}")
    print(f"  got:      {json.dumps(t['expr'], sort_keys=True)}")
print(f"{len(r['passed'])} passed, {len(r['failed'])} failed")
sys.exit(1 if r["failed"] else 0)
PY
