#!/usr/bin/env python3
"""Cross-checks our quantizers and dequantizers against llama.cpp's gguf-py (gguf.quants).

For every dtype our quantize_row supports, a fixed input (Gaussian rows of several scales and
edge rows: zeros, constants, tiny and huge values, exact ties) is quantized by
native/dev/quant_dump.cpp, then
  - dequantize: gguf.quants.dequantize(our bytes) must equal our dequantize_row bit for bit;
  - quantize:   where gguf-py has a quantizer for the dtype, its bytes must equal ours.
gguf-py has no quantizer for the K-quants (only dequantizers) and no q8_K codec at all; the
script says so per dtype. Exit status 1 on any mismatch.

    .venv/bin/python tests/oracle/check_quants.py [--hashes]

--hashes prints the FNV-1a hashes of gguf-py's bytes for the input of the C++ test
quant_known_bytes (native/tests/test_quants.cpp).
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K = 512

DTYPES = {  # our name -> gguf type, or None where gguf-py has no codec
    "f32": T.F32, "f16": T.F16, "bf16": T.BF16, "q4_0": T.Q4_0, "q4_1": T.Q4_1, "q5_0": T.Q5_0,
    "q5_1": T.Q5_1, "q8_0": T.Q8_0, "q4_K": T.Q4_K, "q5_K": T.Q5_K, "q6_K": T.Q6_K, "q8_K": None,
}
HAS_QUANTIZE = {"f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0"}


def build_dump(tmp):
    exe = os.path.join(tmp, "quant_dump")
    cxx = os.environ.get("CXX", "g++")
    src = [os.path.join(ROOT, p) for p in
           ("native/dev/quant_dump.cpp", "native/src/core/dtype.cpp", "native/src/core/quants.cpp")]
    subprocess.run([cxx, "-std=gnu++20", "-O2", "-I", os.path.join(ROOT, "native/include"),
                    "-I", os.path.join(ROOT, "native/src"), *src, "-o", exe], check=True)
    return exe


def lcg_input(n):
    """The exactly representable input of quant_known_bytes (multiples of 1/256 in [-4, 4))."""
    out = np.empty(n, dtype=np.float32)
    s = 12345
    for i in range(n):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = ((s >> 8) % 2048 - 1024) / 256.0
    return out


def test_input():
    rng = np.random.default_rng(20240611)
    rows = [rng.standard_normal(K).astype(np.float32) * s for s in (1e-3, 0.02, 0.5, 1.0, 7.0, 300.0)]
    rows += [rng.standard_normal(K).astype(np.float32) for _ in range(26)]
    heavy = rng.standard_t(2, K).astype(np.float32)                      # outliers
    rows += [heavy, np.zeros(K, np.float32), np.full(K, 0.75, np.float32), np.full(K, -3.0, np.float32)]
    rows += [np.float32(1e-6) * rng.standard_normal(K).astype(np.float32)]  # fp16-subnormal scales
    rows += [(np.arange(K) % 17 - 8).astype(np.float32) / 8]              # exact .5 ties after scaling
    rows += [lcg_input(K), lcg_input(2 * K)[K:]]
    return np.stack(rows)


def fnv1a(b):
    h = 1469598103934665603
    for c in b:
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    x = test_input()
    failures = 0
    tmp = tempfile.mkdtemp(prefix="aha-quants-")
    try:
        exe = build_dump(tmp)
        x.tofile(os.path.join(tmp, "in.f32"))
        subprocess.run([exe, os.path.join(tmp, "in.f32"), str(K), tmp], check=True)
        for name, qt in DTYPES.items():
            ours_q = np.fromfile(os.path.join(tmp, name + ".q"), dtype=np.uint8).reshape(x.shape[0], -1)
            ours_f = np.fromfile(os.path.join(tmp, name + ".f32"), dtype=np.float32).reshape(x.shape)
            if qt is None:
                print(f"SKIP {name}: gguf-py has no {name} codec (covered by the C++ tests only)")
                continue
            notes = []
            theirs_f = quants.dequantize(ours_q, qt).astype(np.float32).reshape(x.shape)
            if np.array_equal(theirs_f.view(np.uint32), ours_f.view(np.uint32)):
                notes.append("dequantize bit-exact")
            else:
                bad = np.argwhere(theirs_f.view(np.uint32) != ours_f.view(np.uint32))
                r, c = bad[0]
                notes.append(f"dequantize MISMATCH at {len(bad)} values, first row {r} col {c}: "
                             f"gguf {theirs_f[r, c]!r} ours {ours_f[r, c]!r}")
                failures += 1
            if name in HAS_QUANTIZE:
                with np.errstate(over="ignore"):
                    theirs_q = np.asarray(quants.quantize(x, qt)).view(np.uint8).reshape(x.shape[0], -1)
                if np.array_equal(theirs_q, ours_q):
                    notes.append("quantize bytes equal")
                else:
                    rows = sorted(set(np.argwhere(theirs_q != ours_q)[:, 0].tolist()))
                    notes.append(f"quantize MISMATCH in rows {rows[:8]}")
                    failures += 1
            else:
                notes.append("gguf-py has no quantizer")
            status = "FAIL" if any("MISMATCH" in n for n in notes) else "PASS"
            print(f"{status} {name}: " + "; ".join(notes))
        if "--hashes" in sys.argv:
            xk = lcg_input(2 * K).reshape(2, K)
            for name in sorted(HAS_QUANTIZE - {"f32"}):
                with np.errstate(over="ignore"):
                    b = np.asarray(quants.quantize(xk, DTYPES[name])).view(np.uint8).tobytes()
                print(f"hash {name}: 0x{fnv1a(b):016x}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'FAILED' if failures else 'OK'}: {failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
