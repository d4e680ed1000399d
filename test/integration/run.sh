#!/usr/bin/env bash
# `npm run test:integration`: every test/integration/*.sh but this one, in
# name order. Each part installs what it needs (apt-get as root) and starts
# its outside programs on loopback only. All parts run; the exit is non-zero
# if any part failed, and the summary names them.
set -uo pipefail
cd "$(dirname "$0")/../.."
failed=()
for part in test/integration/*.sh; do
  [ "$(basename "$part")" = run.sh ] && continue
  echo "=== integration: $part"
  if ! bash "$part"; then failed+=("$part"); fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "integration parts that failed: ${failed[*]}" >&2
  exit 1
fi
echo "integration: every part passed"
