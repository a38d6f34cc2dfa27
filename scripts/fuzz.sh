#!/usr/bin/env bash
# Builds the header-parser fuzzer with clang (libFuzzer + AddressSanitizer) and runs it for
# a short while (FUZZ_SECONDS, default 20) over a seed corpus of valid headers.
# Exit 0 when no crash was found; skipped (exit 0, with a line saying so) without clang.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-20}"
CXX="$(command -v clang++ || command -v clang++-14 || true)"
if [ -z "$CXX" ]; then echo "fuzz: skipped (clang++ not installed; apt-get install clang libclang-rt-14-dev)"; exit 0; fi
out=native/build/fuzz
mkdir -p "$out/corpus"
srcs=(native/dev/fuzz_headers.cpp native/src/formats/gguf.cpp native/src/formats/safetensors.cpp
      native/src/core/json.cpp native/src/core/mapped_file.cpp native/src/core/dtype.cpp)
# Rebuild only when a source or header changed.
if [ ! -x "$out/fuzz_headers" ] || [ -n "$(find "${srcs[@]}" native/src/formats native/src/core native/include -newer "$out/fuzz_headers" 2>/dev/null | head -1)" ]; then
"$CXX" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Inative/include -Inative/src \
  native/dev/fuzz_headers.cpp native/src/formats/gguf.cpp native/src/formats/safetensors.cpp \
  native/src/core/json.cpp native/src/core/mapped_file.cpp native/src/core/dtype.cpp \
  -o "$out/fuzz_headers"
fi
# Seeds: the headers of the generated tiny models (first 64 KiB), prefixed with the parser-selector byte.
for f in tests/fixtures/generated/*.gguf; do
  [ -e "$f" ] || continue
  { printf '\x01'; head -c 65536 "$f"; } > "$out/corpus/$(basename "$f").seed"
done
for f in tests/fixtures/generated/*/model.safetensors; do
  [ -e "$f" ] || continue
  { printf '\x00'; head -c 8192 "$f"; } > "$out/corpus/$(basename "$(dirname "$f")").st.seed"
done
"$out/fuzz_headers" -max_total_time="$secs" -max_len=131072 -timeout=5 -rss_limit_mb=2048 "$out/corpus" 2>&1 | tail -n 5
echo "fuzz: no crash in ${secs}s"
