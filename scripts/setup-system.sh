#!/usr/bin/env bash
# Installs the Debian packages hecate needs and configures Podman for these machines
# (see shared/podman/NOTES.md: crun refuses the hybrid cgroup layout, default ulimits cannot be set as root here).
# Idempotent; needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# catatonit is the init Podman runs for `--init` (the container runtime always passes it).
[ -x /usr/libexec/podman/catatonit ] || command -v catatonit >/dev/null 2>&1 || need+=(catatonit)
# Container plugins' data quota is an ext4 image the daemon makes and checks (mkfs.ext4, e2fsck, resize2fs).
command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.ext4 ] || need+=(e2fsprogs)
# A real OCI registry (distribution 2.8) for the registry-install tests; they start their own on loopback.
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
# PostgreSQL 15 for the store's PostgreSQL backend and the cluster tests; they initdb their own server in a temp dir.
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql)
if [ "${#need[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

conf=/etc/containers/containers.conf
if ! grep -q 'hecate' "$conf" 2>/dev/null; then
  $SUDO mkdir -p /etc/containers
  $SUDO tee "$conf" >/dev/null <<'CONF'
# written by hecate scripts/setup-system.sh
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
fi
for f in /etc/subuid /etc/subgid; do
  grep -q '^containers:' "$f" 2>/dev/null || echo 'containers:1000000:1000000' | $SUDO tee -a "$f" >/dev/null
done
echo "podman: $(podman --version 2>/dev/null || echo missing); runc: $(runc --version 2>/dev/null | head -1 || echo missing); chromium: $(chromium --version 2>/dev/null || echo missing); registry: $(/usr/bin/docker-registry --version 2>/dev/null || echo missing); postgres: $(/usr/lib/postgresql/15/bin/postgres --version 2>/dev/null || echo missing)"
