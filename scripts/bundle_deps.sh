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
# cpp-httplib (qllm serve): Debian ships a compiled library. Its header, the library and the shared
# libraries it needs at run time (OpenSSL 3, brotli), which the GPU machine's image may lack, and OpenSSL's
# headers (httplib.h includes them; the multiarch configuration headers are put beside the others). qllm is
# linked with DT_RPATH to this folder (cmake/QllmDependencies.cmake), so no LD_LIBRARY_PATH is needed.
lib=/usr/lib/x86_64-linux-gnu
mkdir -p .deps/usr/include .deps$lib
cp -a /usr/include/httplib.h .deps/usr/include/
cp -a /usr/include/openssl .deps/usr/include/
cp -a /usr/include/x86_64-linux-gnu/openssl/. .deps/usr/include/openssl/
for f in "$lib"/libcpp-httplib.so* "$lib"/libbrotli{common,dec,enc}.so.1* "$lib"/libssl.so.3 "$lib"/libcrypto.so.3; do
  cp -a "$f" ".deps$lib/"
done
# fmt: the shared library qllm links (found beside the CMake files, so the binaries run from .deps too),
# and CMake checks that the imported file exists.
for so in /usr/lib/x86_64-linux-gnu/libfmt.so*; do cp -a "$so" .deps/usr/lib/x86_64-linux-gnu/; done
du -sh .deps
# The same, packed: gpu_check.sh unpacks .depsx/deps.tar.xz when .deps is not carried (3 MB instead of 13).
mkdir -p .depsx && tar -cJf .depsx/deps.tar.xz .deps && du -sh .depsx/deps.tar.xz
