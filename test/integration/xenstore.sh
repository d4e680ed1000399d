#!/usr/bin/env bash
# XenStore acceptance (issues 9 and 20): Xen's own tools against latchkey's XenStore sockets.
#   - xenstore-utils: xenstore-write/-read/-ls/-rm/-chmod/-list/-exists/-watch with XENSTORED_PATH set,
#     as dom0 (the main socket) and as guests (the per-domain sockets of --xenstore-domain-dir, after
#     INTRODUCE), permissions enforced; xenstore-control (quota, check);
#   - xen-utils-4.17: /usr/lib/xen-4.17/bin/test-xenstore (through libxenstore), every test must pass,
#     as dom0 and as a guest;
#   - oxenstored (xen-utils-4.17), started in user space with ../shared/tools/xenstore's shim when
#     present: the dom0 part of the permission and quota tables runs against it and latchkey
#     (build/test/integration/xenstore-peers.js compare), differences are failures unless documented.
# Installs the Debian packages when missing (needs root and apt-get), starts
# `latchkey serve --data TMP/data --xenstore-socket TMP/xenstored.sock --xenstore-domain-dir TMP/domains`
# (a durable store, served to latchkey and XenStore clients at once), prints PASS/FAIL per check and a
# summary, and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

TEST_XENSTORE=/usr/lib/xen-4.17/bin/test-xenstore
XSCONTROL=/usr/lib/xen-4.17/bin/xenstore-control
OXENSTORED=/usr/lib/xen-4.17/bin/oxenstored
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
npx tsc -p tsconfig.test.json || { echo "FAIL: build (tests)" >&2; exit 2; }
PEERS="node build/test/integration/xenstore-peers.js"

tmp=$(mktemp -d)
sock="$tmp/xenstored.sock"
doms="$tmp/domains"
node dist/cli/main.js serve --data "$tmp/data" --xenstore-socket "$sock" --xenstore-domain-dir "$doms" >"$tmp/daemon.log" 2>&1 &
daemon=$!
oxpid=
cleanup() {
  kill "$daemon" 2>/dev/null
  wait "$daemon" 2>/dev/null
  [ -n "$oxpid" ] && kill "$oxpid" 2>/dev/null
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

# xenstore-control (the full path: the /usr/bin wrapper looks for a hypervisor first).
expect "xenstore-control check" "OK" -- "$XSCONTROL" check
succeeds "xenstore-control quota 0" -- sh -c "'$XSCONTROL' quota 0 | grep -qE '^dom0 quota: [0-9]+/1000\$'"

echo "== guests through the domain transport ($doms)"
sock_mode=$(stat -c %a "$sock")
[ "$sock_mode" = 600 ] && ok "the dom0 socket is 0600" || ko "the dom0 socket is 0600" "mode $sock_mode"
timeout 60 xenstore-watch -n 4 @introduceDomain >"$tmp/intro.out" 2>&1 &
iwatcher=$!
timeout 60 xenstore-watch -n 3 @releaseDomain >"$tmp/release.out" 2>&1 &
rwatcher=$!
for _ in $(seq 1 100); do [ -s "$tmp/intro.out" ] && [ -s "$tmp/release.out" ] && break; sleep 0.05; done
# The toolstack's part: each guest's home, owned by the guest, readable by dom0.
for d in 5 6 7; do
  xenstore-write "/local/domain/$d/name" "guest$d" >/dev/null
  xenstore-chmod -r "/local/domain/$d" "n$d" r0 >/dev/null
done
expect "INTRODUCE 5" "OK" -- $PEERS request "$sock" INTRODUCE 5 4096 1
expect "INTRODUCE 6" "OK" -- $PEERS request "$sock" INTRODUCE 6 4097 1
expect "INTRODUCE 7 (a device model for 5)" "OK" -- $PEERS request "$sock" INTRODUCE 7 4098 1
expect "SET_TARGET 7 5" "OK" -- $PEERS request "$sock" SET_TARGET 7 5
expect "IS_DOMAIN_INTRODUCED 5" "T" -- $PEERS request "$sock" IS_DOMAIN_INTRODUCED 5
dsock_mode=$(stat -c %a "$doms/5")
[ "$dsock_mode" = 600 ] && ok "guest 5's socket is 0600" || ko "guest 5's socket is 0600" "mode $dsock_mode"
g5() { XENSTORED_PATH="$doms/5" "$@"; }
g6() { XENSTORED_PATH="$doms/6" "$@"; }
g7() { XENSTORED_PATH="$doms/7" "$@"; }
expect "guest 5 reads its own key, relatively" "guest5" -- g5 xenstore-read name
succeeds "guest 5 writes under its home, relatively" -- g5 xenstore-write data/secret s5 device/vif/0/state 1
expect "guest 5's node is its own, inheriting the home's permissions" "(n5,r0)" -- sh -c "XENSTORED_PATH=$doms/5 xenstore-ls -p /local/domain/5/data | sed 's/.*(/(/'"
expect "guest 5 lists its home" $'data\ndevice\nname' -- g5 xenstore-list /local/domain/5
succeeds "guest 5 xenstore-exists its node" -- g5 xenstore-exists data/secret
succeeds "guest 5 chmods its node" -- g5 xenstore-chmod data/secret n5 r6
fails "guest 5 cannot give its node away (chmod to owner 6)" -- g5 xenstore-chmod data/secret n6
fails "guest 5 cannot read dom0's keys" -- g5 xenstore-read /it/big
expect "guest 5 reads a dom0 key that grants it read (r5)" "1" -- g5 xenstore-read /it/a
fails "guest 5 cannot write outside its home" -- g5 xenstore-write /elsewhere x
fails "guest 5 cannot list the root" -- g5 xenstore-ls /
fails "guest 6 cannot read guest 5's home" -- g6 xenstore-read /local/domain/5/name
fails "guest 6 cannot list guest 5's home" -- g6 xenstore-list /local/domain/5
fails "guest 6 cannot write into guest 5's home" -- g6 xenstore-write /local/domain/5/data/x y
fails "guest 6 cannot remove guest 5's keys" -- g6 xenstore-rm /local/domain/5/data
expect "guest 6 reads the key guest 5 shared with it" "s5" -- g6 xenstore-read /local/domain/5/data/secret
expect "the device model (7 → 5) reads its target's keys" "guest5" -- g7 xenstore-read /local/domain/5/name
succeeds "the device model writes its target's keys" -- g7 xenstore-write /local/domain/5/device-model/state running
fails "the device model cannot read guest 6's keys" -- g7 xenstore-read /local/domain/6/name
# A guest's watch on another guest's home hears nothing but its set-up event.
g6 timeout 3 xenstore-watch /local/domain/5 >"$tmp/spy.out" 2>&1 &
spy=$!
g5 timeout 3 xenstore-watch -n 2 data >"$tmp/own.out" 2>&1 &
own=$!
for _ in $(seq 1 100); do [ -s "$tmp/spy.out" ] && [ -s "$tmp/own.out" ] && break; sleep 0.05; done
g5 xenstore-write data/more 1 >/dev/null
wait "$own"; orc=$?
wait "$spy"
oout=$(cat "$tmp/own.out"); sout=$(cat "$tmp/spy.out")
if [ $orc -eq 0 ] && [ "$oout" == $'data\ndata/more' ]; then ok "guest 5's relative watch hears its own write"; else ko "guest 5's relative watch hears its own write" "exit $orc, got: $(printf '%q' "$oout")"; fi
if [ "$sout" == "/local/domain/5" ]; then ok "guest 6's watch on guest 5's home hears nothing after set-up"; else ko "guest 6's watch on guest 5's home hears nothing after set-up" "got: $(printf '%q' "$sout")"; fi
# Owned by 5: its home, name, data, data/secret, data/more, device, device/vif, …/0, …/0/state (device-model/* is 7's).
expect "xenstore-control quota 5" "dom5 quota: 9/1000" -- "$XSCONTROL" quota 5
expect "RELEASE 5" "OK" -- $PEERS request "$sock" RELEASE 5
fails "guest 5's socket is gone" -- test -e "$doms/5"
fails "guest 5's keys are gone with it" -- xenstore-exists /local/domain/5/name
expect "IS_DOMAIN_INTRODUCED 5 after RELEASE" "F" -- $PEERS request "$sock" IS_DOMAIN_INTRODUCED 5
expect "RELEASE 7" "OK" -- $PEERS request "$sock" RELEASE 7
wait "$iwatcher"; wait "$rwatcher"
expect "@introduceDomain fired when set and for each INTRODUCE" $'@introduceDomain\n@introduceDomain\n@introduceDomain\n@introduceDomain' -- cat "$tmp/intro.out"
expect "@releaseDomain fired when set and for each RELEASE" $'@releaseDomain\n@releaseDomain\n@releaseDomain' -- cat "$tmp/release.out"
expect "xenstore-control check after the guests" "OK" -- "$XSCONTROL" check

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
# As guest 6, through its socket: relative paths under its home, its own quotas and permissions.
export XENSTORED_PATH="$doms/6"
run_test_xenstore "(as guest 6, all tests, 5 iterations)" -i 5
export XENSTORED_PATH="$sock"

echo "== oxenstored, the dom0 part of the tables"
shim=../shared/tools/xenstore/run-daemons.sh
[ -x "$shim" ] || shim=/work/shared/tools/xenstore/run-daemons.sh
if [ -x "$OXENSTORED" ] && [ -x "$shim" ] && command -v gcc >/dev/null; then
  oxsock=$("$shim" ox "$tmp/ox")
  oxpid=$(cat "$tmp/ox/pid")
  for _ in $(seq 1 100); do [ -S "$oxsock" ] && break; sleep 0.1; done
  if [ -S "$oxsock" ]; then
    while IFS= read -r line; do
      case $line in
        PASS*) ok "${line#PASS  }" ;;
        FAIL*) ko "${line#FAIL  }" ;;
        *) printf '      %s\n' "$line" ;;
      esac
    done < <($PEERS compare "$sock" "$oxsock" 2>&1)
  else
    ko "oxenstored started" "$(cat "$tmp/ox/log" 2>/dev/null)"
  fi
else
  ko "oxenstored available (xen-utils-4.17, gcc, $shim)"
fi

echo
echo "xenstore integration: $pass passed, $fail failed"
if [ $fail -gt 0 ]; then
  printf '  failed: %s\n' "${failed[@]}"
  echo "daemon log:"; sed 's/^/  /' "$tmp/daemon.log"
  exit 1
fi
