#!/usr/bin/env bash
# The one set-up command on a fresh machine (README): system packages, build, a running daemon with the taskboard
# example installed. Idempotent: a second run reuses the running daemon and the installed plugin.
#
#   bash scripts/setup.sh          # HECATE_HOME (default ~/.hecate), HECATE_PORT (default 7770) and
#                                  # HECATE_ADMIN_PORT (default HECATE_PORT + 1; "shared" = one port, less safe) are honoured
#
# Plugins are served on HECATE_PORT, the admin page and API on their own origin (HECATE_ADMIN_PORT), so a plugin's page
# cannot drive the admin API with the operator's login cookie. Both URLs are printed at the end.
# The daemon runs in the background: pid in $HECATE_HOME/run/hecate.pid, log in $HECATE_HOME/run/hecate.log.
# Stop it with: kill "$(cat ~/.hecate/run/hecate.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export HECATE_HOME="${HECATE_HOME:-$HOME/.hecate}"
export HECATE_PORT="${HECATE_PORT:-7770}"
export HECATE_HOST="${HECATE_HOST:-127.0.0.1}"
BASE_URL="http://${HECATE_HOST}:${HECATE_PORT}"
RUN="$HECATE_HOME/run"
PID_FILE="$RUN/hecate.pid"
LOG_FILE="$RUN/hecate.log"
# this script's own calls do not depend on PATH (the `hecate` command it links is for the user's shells)
hecate() { node "$ROOT/packages/cli/dist/src/main.js" "$@"; }

step() { printf '\n==> %s\n' "$*"; }

step "system packages (Podman, runc, Chromium)"
bash scripts/setup-system.sh

step "npm ci"
npm ci --no-audit --no-fund

step "build"
npm run build

step "the hecate command (on PATH for new shells)"
bash scripts/link-cli.sh

step "pack the taskboard example"
npm run pack -w examples/taskboard --if-present
PACKAGE="$(find examples/taskboard -maxdepth 2 -name '*.tar.gz' -not -path '*/node_modules/*' -printf '%T@ %p\n' 2>/dev/null |
  sort -rn | head -1 | cut -d' ' -f2-)"
# no pack script (yet): the CLI packs the project dir itself
SOURCE="${PACKAGE:-examples/taskboard}"
echo "package: $SOURCE"

# probe: prints "ready" when GET /ready answers 200, nothing otherwise
ready() {
  node -e '
    fetch(process.argv[1] + "/ready", { signal: AbortSignal.timeout(1000) })
      .then((r) => { if (r.status === 200) console.log("ready"); })
      .catch(() => {});' "$BASE_URL"
}

mkdir -p "$RUN"
# $HECATE_HOME is the daemon's alone (0700 dirs, 0600 files; the daemon itself runs with umask 077): the log too.
chmod 700 "$HECATE_HOME" "$RUN"
(umask 077 && touch "$LOG_FILE") && chmod 600 "$LOG_FILE"
if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null && [ "$(ready)" = "ready" ]; then
  step "daemon already running (pid $(cat "$PID_FILE")) at $BASE_URL"
else
  step "start the daemon at $BASE_URL (log: $LOG_FILE)"
  rm -f "$PID_FILE"
  # `hecate start` runs the daemon (which writes its pid to $PID_FILE) which publishes its URLs in run/url and run/admin-url
  setsid node "$ROOT/packages/cli/dist/src/main.js" start --json >>"$LOG_FILE" 2>&1 </dev/null &
  starter=$!
  for _ in $(seq 1 300); do
    [ "$(ready)" = "ready" ] && [ -f "$RUN/url" ] && [ -f "$RUN/admin-url" ] && break
    if ! kill -0 "$starter" 2>/dev/null; then
      echo "the daemon exited; last lines of $LOG_FILE:" >&2
      tail -n 30 "$LOG_FILE" >&2
      exit 1
    fi
    sleep 0.2
  done
  if [ "$(ready)" != "ready" ]; then
    echo "the daemon did not become ready within 60 s; see $LOG_FILE" >&2
    exit 1
  fi
  echo "ready (pid $(cat "$PID_FILE"))"
fi

step "install the taskboard plugin"
if status="$(hecate plugin info taskboard --json 2>/dev/null | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).status));')"; then
  case "$status" in
    loaded) echo "taskboard already installed and loaded" ;;
    deactivated) hecate plugin activate taskboard ;;
    *) hecate plugin upgrade "$SOURCE" ;;
  esac
else
  hecate plugin install "$SOURCE"
fi

step "done"
# Published by `hecate start` (the admin URL equals the plugin URL only with HECATE_ADMIN_PORT=shared).
PLUGIN_URL="$(cat "$RUN/url" 2>/dev/null || echo "$BASE_URL")"
ADMIN_URL="$(cat "$RUN/admin-url" 2>/dev/null || echo "$BASE_URL")"
echo "plugins:    $PLUGIN_URL  (taskboard: $PLUGIN_URL/plugin/taskboard/)"
echo "admin:      $ADMIN_URL"
echo "admin page: $ADMIN_URL/admin/login?token=$(cat "$RUN/admin.token")"
echo "command:    hecate --help  (new shells; a plugin of your own: hecate plugin new hello)"
