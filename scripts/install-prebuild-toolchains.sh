#!/bin/sh
# What scripts/prebuild.mjs needs for every target, from Debian's packages (.ci/run runs this):
# the arm64 cross compiler and its glibc (libc6-dev-arm64-cross), musl-gcc, and Debian's
# musl-dev:arm64 unpacked into .cache/sysroot-aarch64-musl (downloaded with an apt state of its own, so no foreign
# architecture is added to the machine); qemu-user, under which the arm64 prebuilds are loaded;
# systemd-analyze, which checks the example unit.
set -eu
cd "$(dirname "$0")/.."
apt="apt-get -qq -o DPkg::Lock::Timeout=600"
need=""
command -v aarch64-linux-gnu-gcc >/dev/null || need="$need gcc-aarch64-linux-gnu"
# Its glibc headers and start files: only a Recommends of the compiler, which --no-install-recommends skips.
[ -e /usr/aarch64-linux-gnu/include/stdio.h ] || need="$need libc6-dev-arm64-cross"
command -v musl-gcc >/dev/null || need="$need musl-tools"
command -v systemd-analyze >/dev/null || need="$need systemd"
command -v qemu-aarch64 >/dev/null || need="$need qemu-user"
if [ -n "$need" ]; then
  $apt update && $apt install -y --no-install-recommends $need
fi
sysroot=.cache/sysroot-aarch64-musl
if [ ! -e "$sysroot/lib/aarch64-linux-musl/libc.so" ]; then
  state=$(mktemp -d)
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/debs"
  : > "$state/status"
  only_arm64="-o Dir::State::Lists=$state/lists -o Dir::Cache=$state/cache
    -o Dir::State::status=$state/status -o APT::Architecture=arm64 -o APT::Architectures::=arm64
    -o APT::Sandbox::User=root"
  $apt $only_arm64 update
  (cd "$state/debs" && $apt $only_arm64 download musl-dev:arm64 musl:arm64)
  mkdir -p "$sysroot"
  for deb in "$state"/debs/*.deb; do dpkg-deb -x "$deb" "$sysroot"; done
  rm -rf "$state"
fi
