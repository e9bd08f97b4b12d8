#!/usr/bin/env bash
# Installs what qllm needs to build, from Debian/Ubuntu packages, when it is missing (--fuzz: and what
# scripts/fuzz.sh needs).
# CUDA is optional: with nvcc on the PATH (or in /usr/local/cuda/bin) the GPU kernels are built too.
set -euo pipefail

packages=(cmake make g++ pkg-config googletest libgtest-dev libcli11-dev libfmt-dev nlohmann-json3-dev libpcre2-dev
          libcpp-httplib-dev curl python3-venv)
# --fuzz (scripts/fuzz.sh): clang with its libFuzzer and sanitizer runtimes as well.
add_fuzz_packages() { packages+=(clang libclang-rt-dev); }
[[ "${1:-}" == "--fuzz" ]] && add_fuzz_packages
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  echo "setup: nvcc found in /usr/local/cuda/bin (add it to PATH to build the CUDA kernels)"
fi
echo "setup: dependencies present"
