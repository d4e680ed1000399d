#!/usr/bin/env bash
# latchkey on etcd (issue 18): the contract suites (test/contract/suite.ts,
# locks.ts, atomic.ts) against a three-member etcd cluster, then the failure
# tests (latchkey serve --backend etcd front-ends: the CLI and the XenStore socket (a protocol
# client and xenstore-utils) through two of them, one
# SIGKILLed under a client, test/integration/etcd-serve.ts; a member stopped
# with SIGSTOP; a lock released while the cluster has no quorum; the leader
# SIGKILLed during a mixed workload from several client processes), then a
# 30 s soak on a cluster of its own (soak --backend etcd: members and clients
# SIGKILLed, every check and the linearizability checker on). Installs etcd-server (and
# xenstore-utils, for the XenStore socket served from etcd) with apt-get
# when missing (needs root), starts the members on free loopback ports under
# a temp dir, kills them at the end, exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
source test/integration/lib/etcd-cluster.sh

# Installs Debian package $2 when command $1 is missing (root with apt-get only).
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "FAIL: $2 is not installed and this is not root with apt-get" >&2
    exit 2
  fi
  echo "installing $2…"
  apt-get update -q >/dev/null || { echo "FAIL: apt-get update" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >/dev/null \
    || { echo "FAIL: apt-get install $2" >&2; exit 2; }
}
need etcd etcd-server
need xenstore-write xenstore-utils
command -v curl >/dev/null 2>&1 || { echo "FAIL: curl is needed to probe the members" >&2; exit 2; }

npx tsc -p tsconfig.test.json || { echo "FAIL: build (tests)" >&2; exit 2; }

tmp=$(mktemp -d)
cleanup() { etcd_cluster_stop; rm -rf "$tmp"; }
trap cleanup EXIT
etcd_cluster_start "$tmp" || exit 2
export LK_ETCD_ENDPOINTS=$ETCD_ENDPOINTS
LK_ETCD_PIDS=$(IFS=,; echo "${ETCD_PIDS[*]}")
export LK_ETCD_PIDS
echo "etcd $(etcd --version | sed -n 's/^etcd Version: //p') members at $ETCD_ENDPOINTS"

failed=()
echo "=== etcd: contract suites"
timeout 900 node --test --test-reporter=spec build/test/integration/etcd-contract.js || failed+=(contract)
echo "=== etcd: writes computed on a head that lags the cluster (a multi's check and a no-op delete pinned by the Txn; errors answered from a fresh head)"
timeout 300 node --test --test-reporter=spec build/test/integration/etcd-stale.js || failed+=(stale)
echo "=== etcd: resuming a session across front-ends (store API: request ids, a close racing an adoption, a failed resume, carried lock waits)"
timeout 300 node --test --test-reporter=spec build/test/integration/etcd-resume.js || failed+=(resume)
echo "=== etcd: the XenStore socket from two front-ends in one process (guest domains shared, reads behind barriers, a waiting write withdrawn with its connection, watches across a compaction reload, adopting a lease about to expire)"
timeout 300 node --test --test-reporter=spec build/test/integration/etcd-xenstore.js || failed+=(xenstore)
echo "=== etcd: latchkey serve --backend etcd front-ends (CLI, XenStore socket, front-end SIGKILLed: session resumed; extra sessions and a wait resumed; clients back too late, with waits; client and front-end SIGKILLed)"
for scenario in cli xenstore failover late sessions late-waits moved hung client-dies; do
  timeout 300 node build/test/integration/etcd-serve.js "$scenario" || failed+=("serve-$scenario")
done
echo "=== etcd: read-after-write across front-ends (fresh and kept clients, a front-end started anew each round, the CLI)"
timeout 300 node build/test/integration/etcd-reads.js || failed+=(reads)
# Stopping a member needs all three up; the leader kill leaves two, so it goes last.
echo "=== etcd: a member stopped (SIGSTOP) for three election timeouts"
timeout 300 node build/test/integration/etcd-failures.js member-stop || failed+=(member-stop)
echo "=== etcd: all three members stopped (SIGSTOP) for 3.5 s under writers: service resumes, no member refused by the client"
timeout 300 node build/test/integration/etcd-failures.js all-stop || failed+=(all-stop)
echo "=== etcd: the 300-VM workload on one client (bench/vm-workload.ts): completes, session kept"
timeout 600 node build/test/integration/etcd-failures.js vms || failed+=(vms)
echo "=== etcd: a lock released while two members are stopped (no quorum) for 10 s"
timeout 300 node build/test/integration/etcd-failures.js release-quorum || failed+=(release-quorum)
echo "=== etcd: the leader SIGKILLed during a mixed workload"
timeout 300 node build/test/integration/etcd-failures.js leader-kill || failed+=(leader-kill)
echo "=== etcd: soak, 30 s (soak --backend etcd; a cluster of its own)"
timeout 900 node build/test/fixtures/soak.js --backend etcd --minutes 0.5 || failed+=(soak)

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAIL etcd: ${failed[*]}" >&2
  exit 1
fi
echo "PASS etcd: contract suites and failure tests"
