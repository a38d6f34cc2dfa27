#!/usr/bin/env bash
# The Python oracle (Hugging Face transformers, torch, tokenizers, safetensors, llama.cpp's gguf
# package) in .venv, from the machine's local wheel store; never needed by `npm test`.
# Idempotent and additive: an existing .venv (another tool may have made it with fewer packages)
# is kept, and only what tests/oracle/requirements.txt pins and it lacks is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
req=tests/oracle/requirements.txt
[ -x .venv/bin/python ] || python3 -m venv .venv
satisfied() {
  .venv/bin/python - "$req" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split('#')[0].strip()
    if not line:
        continue
    name, want = line.split('==')
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        print(f'  {name}: {have or "missing"}, want {want}')
        ok = False
sys.exit(0 if ok else 1)
PY
}
if satisfied >/dev/null; then
  echo "oracle venv ready"
  exit 0
fi
satisfied || true
args=()
[ -d /opt/pypi/simple ] && args+=(--index-url file:///opt/pypi/simple)
[ -d /opt/pypi-more/simple ] && args+=(--extra-index-url file:///opt/pypi-more/simple)
[ -d /opt/wheels ] && args+=(--find-links /opt/wheels)
# torch alone unpacks to about 1 GB; say so plainly when the disk cannot take it, rather than
# leaving pip's "No space left on device" to explain it.
free_mb=$(df -Pm . | awk 'NR == 2 { print $4 }')
if [ "${free_mb:-0}" -lt 3000 ]; then
  echo "oracle: only ${free_mb} MB free on $(df -P . | awk 'NR == 2 { print $6 }'); the venv needs about 3 GB" >&2
fi
# --no-cache-dir: the wheels are local already, a cached copy would only double the disk used.
# pip warns for every package a file:// index lacks; those lines are noise.
.venv/bin/pip install -q --no-cache-dir --disable-pip-version-check "${args[@]}" -r "$req" 2>&1 |
  { grep -v 'is ignored: it is neither a file nor a directory' || true; }
satisfied
echo "oracle venv ready"
