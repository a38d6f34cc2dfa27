#!/usr/bin/env bash
# The Python oracle (Hugging Face transformers, torch, llama.cpp's gguf package) in .venv,
# installed from the machine's configured wheel store; never needed by `npm test`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
if .venv/bin/python -c 'import torch, transformers, safetensors, gguf, numpy' 2>/dev/null; then
  echo "oracle venv ready"; exit 0
fi
# Point pip at the local indexes first so it does not wait on an unreachable public one.
args=()
for idx in /opt/pypi/simple /opt/pypi-more/simple; do
  [ -d "$idx" ] && args+=(--extra-index-url "file://$idx")
done
[ -d /opt/wheels ] && args+=(--find-links /opt/wheels)
if [ -d /opt/pypi/simple ]; then args=(--index-url file:///opt/pypi/simple "${args[@]}"); fi
.venv/bin/pip install -q --disable-pip-version-check "${args[@]}" -r tests/oracle/requirements.txt
echo "oracle venv ready"
