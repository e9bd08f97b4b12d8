#!/usr/bin/env bash
# Copies this machine's Debian build dependencies (headers, static libraries, CMake package files) into
# .deps/ (git-ignored) so that the GPU machine, which cannot install packages, can build qllm. The files keep
# their /usr paths under .deps/, so the CMake package files find their headers relative to themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
rm -rf .deps && mkdir -p .deps
for pkg in libgtest-dev libcli11-dev libfmt-dev nlohmann-json3-dev libpcre2-dev; do
  dpkg -L "$pkg" | while read -r f; do
    [[ -f "$f" ]] || continue
    case "$f" in
      */doc/*|*/man/*|*.so|*.so.*|*pcre2-16*|*pcre2-32*|*pcre2-posix*) continue ;;
    esac
    mkdir -p ".deps$(dirname "$f")" && cp -a "$f" ".deps$f"
  done
done
# libfmt-dev's CMake files name the shared library; the build uses fmt::fmt-header-only, which needs none,
# but CMake checks that the imported file exists.
for so in /usr/lib/x86_64-linux-gnu/libfmt.so*; do cp -a "$so" .deps/usr/lib/x86_64-linux-gnu/; done
du -sh .deps
