"""Cross-checks our GGUF reading and writing against llama.cpp's own `gguf` package.

1. Every GGUF the tiny-model generator wrote is read by gguf-py's GGUFReader: metadata and tensor
   infos equal what our reader sees, and every tensor, dequantized by gguf.quants.dequantize,
   equals the HF safetensors weights (after llama.cpp's Q/K permutation for llama) — exactly for
   f32, to f16 rounding for f16, within the dtype's error for q8_0 / q4_K / q6_K.
2. A GGUF written by gguf-py's GGUFWriter is read by our reader with the same values.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType
from gguf.quants import dequantize
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, 'tests', 'fixtures', 'generated')
NODE = os.path.join(ROOT, 'node_modules', 'node', 'bin', 'node')
if not os.path.exists(NODE):
    NODE = 'node'
HF_NAMES = {
    'attn_norm': 'input_layernorm', 'attn_q': 'self_attn.q_proj', 'attn_k': 'self_attn.k_proj', 'attn_v': 'self_attn.v_proj',
    'attn_output': 'self_attn.o_proj', 'attn_q_norm': 'self_attn.q_norm', 'attn_k_norm': 'self_attn.k_norm',
    'ffn_norm': 'post_attention_layernorm', 'ffn_gate': 'mlp.gate_proj', 'ffn_up': 'mlp.up_proj', 'ffn_down': 'mlp.down_proj',
}
TOL = {'F32': 0.0, 'F16': 1e-3, 'Q8_0': 1e-2, 'Q6_K': 3e-2, 'Q4_K': 0.12}
failures = []


def ours(path):
    out = subprocess.run([NODE, '--import', 'tsx', os.path.join(ROOT, 'tests', 'oracle', 'dump_gguf.ts'), path],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


def value(field):
    """A GGUFReader field as a plain Python value."""
    from gguf import GGUFValueType
    t = field.types[0]
    if t == GGUFValueType.ARRAY:
        it = field.types[-1]
        if it == GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode('utf8') for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if t == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode('utf8')
    v = field.parts[field.data[0]].tolist()[0]
    return bool(v) if t == GGUFValueType.BOOL else v


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-6 * max(1.0, abs(a))
    return a == b


def hf_weights(model_dir):
    if not os.path.isdir(model_dir):
        return None
    return load_file(os.path.join(model_dir, 'model.safetensors'))


def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check_file(path):
    name = os.path.basename(path)
    r = GGUFReader(path)
    mine = ours(path)
    # metadata
    for k, f in r.fields.items():
        if k.startswith('GGUF.'):
            continue
        v = value(f)
        m = mine['metadata'].get(k)
        if isinstance(v, list) and len(v) > 64:
            ok = isinstance(m, dict) and m['length'] == len(v) and all(same(x, y) for x, y in zip(m['head'], v[:8]))
        elif isinstance(v, list):
            ok = isinstance(m, list) and len(m) == len(v) and all(same(x, y) for x, y in zip(m, v))
        else:
            ok = m is not None and same(m, v)
        if not ok:
            failures.append(f'{name}: metadata {k}: gguf-py {str(v)[:80]}, ours {str(m)[:80]}')
    # tensor infos
    theirs = {t.name: t for t in r.tensors}
    for t in mine['tensors']:
        g = theirs.get(t['name'])
        if g is None or list(map(int, g.shape)) != t['shape'] or int(g.tensor_type) != t['type']:
            failures.append(f'{name}: tensor {t["name"]} info differs')
    # values against the HF weights
    stem = name.rsplit('-', 1)[0]
    hf = hf_weights(os.path.join(GEN, stem))
    ref_gguf = GGUFReader(os.path.join(GEN, stem + '-f32.gguf')) if hf is None else None
    arch = value(r.fields['general.architecture'])
    heads = value(r.fields[f'{arch}.attention.head_count'])
    kv_heads = value(r.fields[f'{arch}.attention.head_count_kv'])
    for t in r.tensors:
        x = dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)] if len(t.shape) > 1 else [-1]).astype(np.float64)
        if t.name == 'rope_freqs.weight':
            continue
        if hf is not None:
            parts = t.name.split('.')
            if t.name == 'token_embd.weight':
                key = 'model.embed_tokens.weight'
            elif t.name == 'output_norm.weight':
                key = 'model.norm.weight'
            elif t.name == 'output.weight':
                key = 'lm_head.weight'
            else:
                key = f'model.layers.{parts[1]}.{HF_NAMES[parts[2]]}.{parts[3]}'
            ref = hf[key].astype(np.float64)
            if arch == 'llama' and parts[-2] in ('attn_q', 'attn_k') and parts[-1] == 'weight':
                ref = permute(ref, heads if parts[-2] == 'attn_q' else kv_heads)
        else:
            ref = [u for u in ref_gguf.tensors if u.name == t.name][0]
            ref = dequantize(ref.data, ref.tensor_type).reshape(x.shape).astype(np.float64)
        err = np.sqrt(np.mean((x - ref) ** 2)) / (np.sqrt(np.mean(ref ** 2)) + 1e-30)
        tol = TOL[t.tensor_type.name]
        if not err <= tol:
            failures.append(f'{name}: {t.name} ({t.tensor_type.name}) differs from the HF weights: rms err {err:.3g} > {tol}')
    print(f'{name}: {len(r.fields)} metadata keys, {len(r.tensors)} tensors checked')


def check_writer_compat():
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, 'py.gguf')
        w = GGUFWriter(p, 'llama')
        w.add_uint32('t.u32', 7)
        w.add_int32('t.i32', -7)
        w.add_float32('t.f32', 0.25)
        w.add_float64('t.f64', 1.5)
        w.add_bool('t.bool', True)
        w.add_string('t.str', 'héllo')
        w.add_uint64('t.u64', 2 ** 40)
        w.add_array('t.arr', ['a', 'bb'])
        w.add_array('t.ints', [1, 2, 3])
        w.add_tensor('w', np.arange(64, dtype=np.float32).reshape(2, 32))
        w.add_tensor('h', np.arange(32, dtype=np.float16))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        m = ours(p)
        want = {'t.u32': 7, 't.i32': -7, 't.f32': 0.25, 't.f64': 1.5, 't.bool': True, 't.str': 'héllo', 't.u64': 2 ** 40,
                't.arr': ['a', 'bb'], 't.ints': [1, 2, 3], 'general.architecture': 'llama'}
        for k, v in want.items():
            if m['metadata'].get(k) != v:
                failures.append(f'gguf-py writer: {k} read as {m["metadata"].get(k)!r}, wrote {v!r}')
        shapes = {t['name']: (t['shape'], t['type']) for t in m['tensors']}
        if shapes.get('w') != ([32, 2], 0) or shapes.get('h') != ([32], 1):
            failures.append(f'gguf-py writer: tensor infos read as {shapes}')
        print('gguf-py GGUFWriter file: read back by our reader')


def main():
    files = sorted(f for f in os.listdir(GEN) if f.endswith('.gguf'))
    if not files:
        print('no generated GGUF files; run tests/fixtures/make-tiny-models.ts first')
        return 1
    for f in files:
        check_file(os.path.join(GEN, f))
    check_writer_compat()
    if failures:
        print(f'{len(failures)} problems:', *failures[:50], sep='\n  ')
        return 1
    print(f'OK: {len(files)} GGUF files agree with gguf-py')
    return 0


if __name__ == '__main__':
    sys.exit(main())
