#!/usr/bin/env bash
# XenStore acceptance (issue 9): Xen's own tools against latchkey's XenStore socket.
#   - xenstore-utils: xenstore-write/-read/-ls/-rm/-chmod/-list/-exists/-watch with XENSTORED_PATH set;
#   - xen-utils-4.17: /usr/lib/xen-4.17/bin/test-xenstore (through libxenstore), every test must pass.
# Installs the Debian packages when missing (needs root and apt-get), starts
# `latchkey serve --data TMP/data --xenstore-socket TMP/xenstored.sock` (a
# durable store, served to latchkey and XenStore clients at once), prints PASS/FAIL per check and a
# summary, and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

TEST_XENSTORE=/usr/lib/xen-4.17/bin/test-xenstore
PKGS=(xenstore-utils xen-utils-4.17)

if ! command -v xenstore-write >/dev/null 2>&1 || [ ! -x "$TEST_XENSTORE" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "FAIL: ${PKGS[*]} are not installed and this is not root with apt-get" >&2
    exit 2
  fi
  echo "installing ${PKGS[*]}…"
  apt-get update -q >/dev/null || { echo "FAIL: apt-get update" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PKGS[@]}" >/dev/null \
    || { echo "FAIL: apt-get install ${PKGS[*]}" >&2; exit 2; }
fi

npx tsc -p tsconfig.json || { echo "FAIL: build" >&2; exit 2; }

tmp=$(mktemp -d)
sock="$tmp/xenstored.sock"
node dist/cli/main.js serve --data "$tmp/data" --xenstore-socket "$sock" >"$tmp/daemon.log" 2>&1 &
daemon=$!
cleanup() {
  kill "$daemon" 2>/dev/null
  wait "$daemon" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q '^ready$' "$tmp/daemon.log" 2>/dev/null && break; sleep 0.1; done
if [ ! -S "$sock" ]; then
  echo "FAIL: the XenStore adapter did not start:" >&2
  cat "$tmp/daemon.log" >&2
  exit 1
fi
export XENSTORED_PATH="$sock"

pass=0
fail=0
failed=()
ok() { pass=$((pass + 1)); printf 'PASS  %s\n' "$1"; }
ko() { fail=$((fail + 1)); failed+=("$1"); printf 'FAIL  %s\n' "$1"; [ -n "${2:-}" ] && printf '      %s\n' "$2"; }

# expect NAME EXPECTED-STDOUT -- COMMAND…   (command must exit 0 and print exactly EXPECTED)
expect() {
  local name=$1 want=$2; shift 3
  local got rc
  got=$("$@" 2>&1); rc=$?
  if [ $rc -eq 0 ] && [ "$got" == "$want" ]; then ok "$name"; else ko "$name" "exit $rc, got: $(printf '%q' "$got"), want: $(printf '%q' "$want")"; fi
}
# succeeds NAME -- COMMAND…   /   fails NAME -- COMMAND…
succeeds() { local name=$1; shift 2; local out; if out=$("$@" 2>&1); then ok "$name"; else ko "$name" "exit $?: $out"; fi; }
fails() { local name=$1; shift 2; if "$@" >/dev/null 2>&1; then ko "$name" "succeeded, should have failed"; else ok "$name"; fi; }

echo "== xenstore-utils against $sock"
succeeds "xenstore-write creates nodes and parents" -- xenstore-write /it/a 1 /it/b/c two
expect "xenstore-read reads values" "1" -- xenstore-read /it/a
expect "xenstore-read of a created parent is empty" "" -- xenstore-read /it/b
expect "xenstore-read several paths" $'1\ntwo' -- xenstore-read /it/a /it/b/c
fails "xenstore-read of a missing node fails" -- xenstore-read /it/missing
succeeds "xenstore-exists of an existing node" -- xenstore-exists /it/b/c
fails "xenstore-exists of a missing node" -- xenstore-exists /it/missing
expect "xenstore-list lists children" $'a\nb' -- xenstore-list /it
expect "xenstore-ls shows the subtree" $'a = "1"\nb = ""\n c = "two"' -- xenstore-ls /it
succeeds "xenstore-chmod sets permissions" -- xenstore-chmod /it/a n0 r5 b7
lsp=$(xenstore-ls -p /it 2>&1)
if grep -q '^a = "1" .*(n0,r5,b7)$' <<<"$lsp"; then ok "xenstore-ls -p shows the permissions"; else ko "xenstore-ls -p shows the permissions" "$lsp"; fi
succeeds "xenstore-chmod -r sets permissions recursively" -- xenstore-chmod -r /it/b r3
lsp=$(xenstore-ls -p /it/b 2>&1)
if grep -q '^c = "two" .*(r3)$' <<<"$lsp"; then ok "xenstore-chmod -r reached the children"; else ko "xenstore-chmod -r reached the children" "$lsp"; fi
fails "xenstore-chmod with a bad permission fails" -- xenstore-chmod /it/a x9
succeeds "xenstore-write of a relative path" -- xenstore-write rel/x 5
expect "relative paths live under /local/domain/0" "5" -- xenstore-read /local/domain/0/rel/x
fails "xenstore-write of an invalid path fails" -- xenstore-write '/it/bad path' x
fails "xenstore-write of a 2049-byte value fails (E2BIG)" -- xenstore-write /it/big "$(head -c 2049 /dev/zero | tr '\0' x)"
succeeds "xenstore-write of a 2048-byte value" -- xenstore-write /it/big "$(head -c 2048 /dev/zero | tr '\0' x)"
succeeds "xenstore-rm removes a subtree" -- xenstore-rm /it/b
fails "the removed subtree is gone" -- xenstore-exists /it/b/c
succeeds "xenstore-rm of a missing node under an existing parent" -- xenstore-rm /it/missing
succeeds "xenstore-rm -t removes empty parents too" -- sh -c 'xenstore-write /it/t1/t2/t3 v && xenstore-rm -t /it/t1/t2/t3'
fails "xenstore-rm -t left no empty parent" -- xenstore-exists /it/t1

# xenstore-watch: the watch fires once when set, then for a child write and for the removal.
xenstore-write /it/w "" >/dev/null
timeout 10 xenstore-watch -n 3 /it/w >"$tmp/watch.out" 2>&1 &
watcher=$!
for _ in $(seq 1 100); do [ -s "$tmp/watch.out" ] && break; sleep 0.05; done
xenstore-write /it/w/x 1 >/dev/null
xenstore-rm /it/w >/dev/null
wait "$watcher"; wrc=$?
wout=$(cat "$tmp/watch.out")
if [ $wrc -eq 0 ] && [ "$wout" == $'/it/w\n/it/w/x\n/it/w' ]; then ok "xenstore-watch sees set-up, child write and removal"; else ko "xenstore-watch sees set-up, child write and removal" "exit $wrc, got: $(printf '%q' "$wout")"; fi

echo "== $TEST_XENSTORE"
run_test_xenstore() {
  local label=$1; shift
  local out rc
  out=$("$TEST_XENSTORE" "$@" 2>&1); rc=$?
  printf '%s\n' "$out" | sed 's/^/      /'
  local listed ran
  listed=$("$TEST_XENSTORE" --list-tests | wc -l)
  ran=$(grep -cE '^[^:]+: +(avg: )?[0-9]+ ns' <<<"$out")
  if [ $rc -eq 0 ] && ! grep -q 'failed' <<<"$out" && [ "$ran" -eq "$listed" ]; then
    ok "test-xenstore $label: $ran/$listed tests passed"
  else
    ko "test-xenstore $label" "exit $rc, $ran/$listed tests reported a time"
  fi
}
run_test_xenstore "(all tests once)"
run_test_xenstore "(all tests, 20 iterations)" -i 20

echo
echo "xenstore integration: $pass passed, $fail failed"
if [ $fail -gt 0 ]; then
  printf '  failed: %s\n' "${failed[@]}"
  echo "daemon log:"; sed 's/^/  /' "$tmp/daemon.log"
  exit 1
fi
