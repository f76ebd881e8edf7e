#!/usr/bin/env bash
# Puts the `hecate` command on PATH, for every new shell, from this checkout's build (run by scripts/setup.sh after
# `npm run build`; running it again is harmless). The command is packages/cli/dist/src/main.js (a `#!/usr/bin/env
# node` script); its dependencies (@hecate/sdk, @hecate/daemon, ...) resolve from this checkout's node_modules, since
# Node follows the link to the real file.
#
#   HECATE_BIN_DIR=/some/bin bash scripts/link-cli.sh   # a symlink in that dir
#   bash scripts/link-cli.sh                            # `npm install -g ./packages/cli` (npm's global bin dir: root
#                                                       # or a user-owned npm prefix; sudo when it is not writable and
#                                                       # sudo asks no password); otherwise a symlink in ~/.local/bin
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
MAIN="$ROOT/packages/cli/dist/src/main.js"
if [ ! -f "$MAIN" ]; then
  echo "link-cli: $MAIN does not exist: run npm run build first" >&2
  exit 1
fi
head -1 "$MAIN" | grep -q '^#!/usr/bin/env node' || {
  echo "link-cli: $MAIN has no #!/usr/bin/env node line" >&2
  exit 1
}
[ -x "$MAIN" ] || chmod 755 "$MAIN"

link_into() { # dir: a symlink dir/hecate -> the built CLI
  mkdir -p "$1"
  ln -sfn "$MAIN" "$1/hecate"
  echo "hecate -> $1/hecate"
}

if [ -n "${HECATE_BIN_DIR:-}" ]; then
  link_into "$HECATE_BIN_DIR"
  BIN="$HECATE_BIN_DIR"
else
  PREFIX="$(npm prefix -g)"
  [ -e "$PREFIX" ] || mkdir -p "$PREFIX" 2>/dev/null || true
  SUDO=""
  # sudo only when it needs no password prompt now (setup-system.sh's sudo has just been granted; never hang here)
  if [ ! -w "$PREFIX" ] && [ "$(id -u)" != "0" ] && sudo -n true 2>/dev/null; then SUDO="sudo"; fi
  # A folder given to `npm install -g` is linked, not copied: the command follows this checkout's later builds.
  if { [ -w "$PREFIX" ] || [ -n "$SUDO" ]; } &&
    $SUDO npm install -g --no-audit --no-fund --prefix "$PREFIX" "$ROOT/packages/cli" >/dev/null; then
    BIN="$PREFIX/bin"
    echo "hecate -> $BIN/hecate (npm install -g ./packages/cli)"
  else
    BIN="$HOME/.local/bin"
    link_into "$BIN"
  fi
fi

case ":$PATH:" in
  *":$BIN:"*) ;;
  *) echo "note: $BIN is not on your PATH; add it (e.g. in ~/.profile: export PATH=\"$BIN:\$PATH\")" ;;
esac
