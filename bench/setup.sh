#!/usr/bin/env bash
# `npm run bench:setup`: installs the peers the benchmarks compare against,
# from Debian's own packages (checked with apt-cache: etcd-server 3.4,
# redis-server 7.0 on bookworm). The harness starts its own instances on
# 127.0.0.1 with temporary data directories; the packaged services are not used.
# The npm peers (etcd3, ioredis, lmdb) are devDependencies: `npm ci` brings them.
# oxenstored (xen-utils-4.17, the xenstore workload's peer) is optional: it also
# needs gcc, root and the LD_PRELOAD stub of ../shared/tools/xenstore/; where any
# is missing the workload prints "not available" and why.
set -euo pipefail
if ! command -v apt-get >/dev/null; then
  echo "bench:setup needs apt-get (Debian/Ubuntu); install etcd and redis-server by hand and put them on PATH" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update
$sudo apt-get install -y etcd-server redis-server
if ! $sudo apt-get install -y --no-install-recommends xen-utils-4.17 gcc; then
  echo "xen-utils-4.17 is not installable here: the xenstore workload will print oxenstored as not available" >&2
fi
etcd --version | sed -n 1p   # sed reads to the end: head would close the pipe early, and pipefail would fail on the SIGPIPE
redis-server --version
