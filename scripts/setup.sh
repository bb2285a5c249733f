#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) to build, run and test Sonde: the Debian packages the
# demo and the tests use, the npm dependencies (better-sqlite3 compiles from source against
# Node's own headers), and the build. Safe to run again; it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: openssl (external-PKI fixtures, the benchmarks' reference), time (GNU time
# for the benchmarks' peak RSS), vsftpd (the FTP drop tests), mosquitto (the external broker),
# python3/make/g++ (node-gyp for better-sqlite3), systemd (systemd-notify for the sd_notify test; PID 1
# of the systemd runner's test containers and of `sonde lab up --init systemd` probes),
# lxc + busybox-static + iproute2 (the lab: LXC probes with busybox init on a bridge; tc for its
# slow-link tests). The tests run vsftpd and mosquitto in the foreground on loopback ports; Debian's
# service starts are refused or fail harmlessly where PID 1 is not systemd. Without recommends, lxc
# brings no dnsmasq, so its lxc-net NAT bridge never starts: the lab makes its own bridge, unrouted.
APT_PACKAGES=(openssl python3 make g++ tar gzip time vsftpd mosquitto systemd lxc busybox-static iproute2)
# podman + runc: the lab's second engine (test/lab/podman-backend.test.ts). runc because crun refuses
# hybrid cgroups; the lab runs its own `podman system service` and never uses podman's networks.
APT_PACKAGES+=(podman runc)
# prometheus: for promtool only (test/server/metrics.test.ts lints /metrics with it). Debian has no
# promtool-only package; the Prometheus daemon it also ships is kept from running (below).
APT_PACKAGES+=(prometheus)
# chromium: the dashboard's end-to-end tests and bench/dashboard drive Debian's Chromium with
# playwright-core (test/helpers/browser.ts); nothing is downloaded by playwright.
APT_PACKAGES+=(chromium)
# dpkg-dev (dpkg-shlibdeps, dpkg-architecture), binutils (strip) and lintian: scripts/build-deb and
# its test (test/packaging/), which also runs apt-get remove/purge in a container.
APT_PACKAGES+=(dpkg-dev binutils lintian)
# Block slots and the QEMU probe (docs/slots.md, issue 20): grub-editenv and grub-install
# (grub2-common, grub-pc-bin), fw_printenv/fw_setenv on a file-backed environment
# (libubootenv-tool; u-boot-tools for mkimage), sfdisk (fdisk), mkfs.ext4 (e2fsprogs), QEMU under TCG
# (qemu-system-x86) with Debian's small cloud kernel as the guest's (linux-image-cloud-amd64), and
# U-Boot's ROMs for QEMU (u-boot-qemu; the probe boots the qemu-x86 one, docs/slots.md "U-Boot"),
# and mksquashfs (squashfs-tools) for squashfs system images (test/slots/system-install.test.ts).
APT_PACKAGES+=(grub-pc-bin grub2-common libubootenv-tool u-boot-tools fdisk e2fsprogs qemu-system-x86 linux-image-cloud-amd64 u-boot-qemu squashfs-tools)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or install them first)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Only promtool is wanted: where systemd runs, the daemon this run just installed is stopped and
  # disabled (a Prometheus listening on :9090 is not something the tests may leave behind).
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
fi

# node-gyp must build against the headers Debian's Node ships, never download them; and
# better-sqlite3's install script (prebuild-install || node-gyp) must not fetch a prebuilt binary
# from GitHub first: build-from-source makes prebuild-install step aside at once.
export npm_config_nodedir="${npm_config_nodedir:-/usr}"
export npm_config_build_from_source=true
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build
