#!/usr/bin/env bash
# The web console in a real browser (issue 19): Debian's chromium, driven by
# playwright-core, against a real `latchkey serve --http` and real client
# processes (build/test/integration/console-browser.js says what it checks).
# Installs chromium with apt-get when missing (needs root), runs everything on
# loopback, saves the screenshots under docs/img/ (or $CONSOLE_SHOTS), and
# exits non-zero on any failure. Never downloads a browser of its own.
set -uo pipefail
cd "$(dirname "$0")/../.."

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "FAIL: chromium is not installed and this is not root with apt-get" >&2
    exit 2
  fi
  echo "installing chromium…"
  apt-get update -q >/dev/null || { echo "FAIL: apt-get update" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null \
    || { echo "FAIL: apt-get install chromium" >&2; exit 2; }
fi
"$CHROMIUM" --version || { echo "FAIL: $CHROMIUM does not run" >&2; exit 2; }

npx tsc -p tsconfig.json || { echo "FAIL: build" >&2; exit 2; }
npx tsc -p tsconfig.test.json || { echo "FAIL: build (tests)" >&2; exit 2; }
shots=${CONSOLE_SHOTS:-docs/img}
mkdir -p "$shots"
# The driver kills what it started (server, clients, browser) on every way out; the timeout is a last guard.
timeout 600 node build/test/integration/console-browser.js "$CHROMIUM" "$shots"
