#!/usr/bin/env bash
# gpu-deps.sh — the build dependencies of moescope for a machine where nothing can be fetched
# (the lent GPU machine of the `device` tool: an Ubuntu CUDA image, no apt, no network).
#
#   bash tools/gpu-deps.sh fetch     HERE (Debian 12 amd64, apt works): downloads, without
#                                    installing, the .deb files of the -dev packages that
#                                    scripts/install-deps.sh installs, plus the run-time libraries
#                                    they need (dependency closure, base system left out), into
#                                    .deps/ at the repo root (git-ignored; travels to the device
#                                    with carry [".deps"]).
#   bash tools/gpu-deps.sh use       THERE: unpacks every .deb of .deps/ with `dpkg -x` into a
#                                    private prefix (MOESCOPE_DEPS_PREFIX, default
#                                    /tmp/moescope-deps; never into /) and writes PREFIX/env.sh.
#   source tools/gpu-deps.sh use     the same, then sources PREFIX/env.sh into the calling shell.
#
# env.sh exports:
#   PKG_CONFIG            a wrapper around the carried pkgconf (found by CMake's FindPkgConfig)
#   PKG_CONFIG_LIBDIR     ONLY the prefix's pkgconfig dirs (the system's .pc files are not seen)
#   PKG_CONFIG_PATH       empty
#   PKG_CONFIG_SYSROOT_DIR=PREFIX   pkgconf prefixes the .pc files' /usr/... -I/-L paths with it
#   LDFLAGS               -Wl,-rpath,PREFIX/usr/lib/x86_64-linux-gnu:PREFIX/lib/... (+ -rpath-link,
#                         --disable-new-dtags): CMake takes LDFLAGS as the initial
#                         CMAKE_EXE/SHARED_LINKER_FLAGS of a fresh build dir, so the built binaries
#                         and tests find the carried .so files, their transitive ones too (DT_RPATH,
#                         not DT_RUNPATH), without LD_LIBRARY_PATH.
#   MOESCOPE_DEPS_LIBDIR  the prefix's two library dirs (LD_LIBRARY_PATH is deliberately NOT
#                         exported: it would make the image's python3/torch load Debian 12's
#                         libsqlite3/libcrypto; use it per command if ever needed)
#   FONTCONFIG_FILE       only when the system has no /etc/fonts/fonts.conf: a fonts.conf that
#                         reads the carried DejaVu fonts (cairo's text in the report PNGs)
_gd_main() {
  local root pkgs prefix deb n
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  # what scripts/install-deps.sh installs
  pkgs=(pkg-config libsqlite3-dev libpcre2-dev libcairo2-dev libcjson-dev libssl-dev libutf8proc-dev)
  prefix="${MOESCOPE_DEPS_PREFIX:-/tmp/moescope-deps}"
  case "${1:-}" in
  fetch)
    command -v apt-get >/dev/null || { echo "gpu-deps: fetch needs apt-get (Debian/Ubuntu)" >&2; return 1; }
    [ "$(dpkg --print-architecture)" = amd64 ] || { echo "gpu-deps: fetch must run on amd64" >&2; return 1; }
    # Left out: packages every Ubuntu 24.04 CUDA image has for sure (libc, libgcc, libstdc++,
    # zlib and the other essential/required libraries), the C library's development headers
    # (Debian 12's glibc 2.36 headers must never shadow the image's own through -I PREFIX/usr/include),
    # dpkg/debconf/perl/python and their libraries (interpreters, not needed to build), and the
    # fonts other than DejaVu (fontconfig-config wants one of them).
    local skip='^(libc6|libc6-dev|libc-dev-bin|linux-libc-dev|libcrypt1|libcrypt-dev|libnsl2|libnsl-dev|libtirpc3|libtirpc-dev|libtirpc-common|rpcsvc-proto|libgcc-s1|gcc-[0-9]+-base|libstdc\+\+6|zlib1g|libbz2-1\.0|liblzma5|libzstd1|libselinux1|libsepol2|libmount1|libblkid1|libuuid1|libacl1|libtinfo6|libncursesw6|libcom-err2|libkeyutils1|libkrb5-3|libkrb5support0|libk5crypto3|libgssapi-krb5-2|libdb5\.3|libgdbm6|libgdbm-compat4|readline-common|libreadline8|dpkg|tar|install-info|debconf|cdebconf|libdebian-installer4|libnewt0\.52|libslang2|libtextwrap1|lsb-base|sysvinit-utils|perl|perl-base|perl-modules-[0-9.]+|libperl[0-9.]+|python3.*|libpython3.*|mailcap|media-types|mime-support|fonts-(croscore|freefont-otf|freefont-ttf|liberation|liberation2|texgyre|urw-base35)|ttf-bitstream-vera|xfonts-encodings|xfonts-utils|libfontenc1)$'
    local closure
    closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "${pkgs[@]}" | grep -E '^[a-z0-9]' | sort -u | grep -Ev "$skip") || return 1
    rm -rf "$root/.deps"
    mkdir -p "$root/.deps"
    # shellcheck disable=SC2086
    (cd "$root/.deps" && apt-get download $closure) || { echo "gpu-deps: apt-get download failed" >&2; return 1; }
    n=$(ls "$root/.deps"/*.deb | wc -l)
    echo "gpu-deps: $n packages, $(du -sh "$root/.deps" | cut -f1) in .deps/:"
    echo "$closure" | tr '\n' ' '; echo
    echo "device call: run(command=\"bash tools/gpu-check.sh\", timeout_s=540, carry=[\".deps\"])"
    ;;
  use)
    [ -d "$root/.deps" ] && ls "$root/.deps"/*.deb >/dev/null 2>&1 \
      || { echo "gpu-deps: no .deps/*.deb (run 'bash tools/gpu-deps.sh fetch' here first, carry [\".deps\"])" >&2; return 1; }
    case "$prefix" in /|/usr|/usr/*) echo "gpu-deps: refusing prefix $prefix" >&2; return 1 ;; esac
    rm -rf "$prefix"
    mkdir -p "$prefix"
    n=0
    for deb in "$root/.deps"/*.deb; do
      if command -v dpkg >/dev/null; then
        dpkg -x "$deb" "$prefix" || { echo "gpu-deps: dpkg -x $deb failed" >&2; return 1; }
      else # no dpkg: a .deb is an ar archive holding data.tar.*
        (t=$(mktemp -d) && cd "$t" && ar x "$deb" && tar -xf data.tar.* -C "$prefix" && rm -rf "$t") \
          || { echo "gpu-deps: unpacking $deb failed" >&2; return 1; }
      fi
      n=$((n + 1))
    done
    # Debian 12 packages still put some libraries (libexpat, liblzo2) in /lib, not /usr/lib
    local lib="$prefix/usr/lib/x86_64-linux-gnu" lib2="$prefix/lib/x86_64-linux-gnu"
    mkdir -p "$prefix/bin"
    cat >"$prefix/bin/pkg-config" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$lib:$lib2\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$prefix/usr/bin/pkgconf" "\$@"
EOF
    chmod +x "$prefix/bin/pkg-config"
    cat >"$prefix/env.sh" <<EOF
export PKG_CONFIG="$prefix/bin/pkg-config"
export PKG_CONFIG_LIBDIR="$lib/pkgconfig:$prefix/usr/share/pkgconfig"
export PKG_CONFIG_PATH=
export PKG_CONFIG_SYSROOT_DIR="$prefix"
export LDFLAGS="-Wl,--disable-new-dtags -Wl,-rpath,$lib:$lib2 -Wl,-rpath-link,$lib:$lib2\${LDFLAGS:+ \$LDFLAGS}"
export MOESCOPE_DEPS_LIBDIR="$lib:$lib2"
export MOESCOPE_DEPS_PREFIX="$prefix"
EOF
    if [ ! -e /etc/fonts/fonts.conf ] && [ -d "$prefix/usr/share/fonts" ]; then
      mkdir -p "$prefix/etc/fonts" "$prefix/var/cache/fontconfig"
      cat >"$prefix/etc/fonts/fonts.conf" <<EOF
<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<fontconfig>
  <dir>$prefix/usr/share/fonts</dir>
  <cachedir>$prefix/var/cache/fontconfig</cachedir>
</fontconfig>
EOF
      echo "export FONTCONFIG_FILE=\"$prefix/etc/fonts/fonts.conf\"" >>"$prefix/env.sh"
    fi
    "$prefix/bin/pkg-config" --version >/dev/null 2>&1 || { echo "gpu-deps: the carried pkgconf does not run" >&2; return 1; }
    echo "gpu-deps: $n carried packages unpacked into $prefix; environment in $prefix/env.sh"
    ;;
  *)
    echo "usage: bash tools/gpu-deps.sh fetch|use   (or: source tools/gpu-deps.sh use)" >&2
    return 2
    ;;
  esac
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # sourced: no `set -e`/exit leaking into the caller; on `use`, load the environment too
  _gd_main "$@" || return
  # shellcheck disable=SC1091
  if [ "${1:-}" = use ]; then . "${MOESCOPE_DEPS_PREFIX:-/tmp/moescope-deps}/env.sh"; fi
else
  set -uo pipefail
  _gd_main "$@"
fi
