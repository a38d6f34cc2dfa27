"""Cross-checks the generated tiny models (tests/fixtures/make-tiny-models.ts) with llama.cpp's
own `gguf` package and with safetensors/torch:

GGUF files (read with gguf.GGUFReader):
  - metadata: every key and its stored type as convert_hf_to_gguf.py writes them for that
    architecture (recomputed here from config.json), the vocabulary as its get_vocab_base makes it
    (tokens, token types, "[PAD<id>]" padding), and merges, special ids, add_bos/add_eos and the
    chat template exactly as gguf-py's SpecialVocab reads them from the HF folder;
  - tensors: the names, ggml shapes and dtypes the converter produces (1-D tensors and norms F32),
    and the values: F32 equal to the HF weights (after the converter's Q/K permutation for llama),
    F16 equal to numpy's rounding, Q8_0 byte-identical to gguf.quants.quantize, Q4_K/Q6_K
    dequantized (gguf.quants.dequantize) within those formats' error of the F32 reference;
    rope_freqs.weight equal to the converter's llama3 formula, and consistent with transformers'
    llama3 inverse frequencies.
HF copies: the f16/bf16 safetensors equal torch's rounding of the f32 weights, the sharded copy
equals the single file and its index is right, every safetensors header is laid out as the
safetensors library writes it.
Our GGUF reader (src-main/formats/gguf.ts, through tests/oracle/dump_gguf.ts) sees the same
metadata and tensor infos as gguf-py in every generated file, and reads back a file written by
gguf-py's GGUFWriter.

    .venv/bin/python tests/oracle/check_gguf_files.py [--gen DIR]
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFValueType as V, GGUFWriter, SpecialVocab
from gguf.quants import dequantize, quantize
from safetensors import safe_open
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, 'tests', 'fixtures', 'generated')
NODE = next((p for p in (os.path.join(ROOT, 'node_modules', 'node', 'bin', 'node'), os.path.join(ROOT, 'node_modules', '.bin', 'node'))
             if os.path.exists(p)), 'node')

FILE_TYPE = {'f32': 0, 'f16': 1, 'q8_0': 7, 'q4_K': 15, 'q6_K': 18}
QTYPE = {'f32': Q.F32, 'f16': Q.F16, 'q8_0': Q.Q8_0, 'q4_K': Q.Q4_K, 'q6_K': Q.Q6_K}
PRE = {'tokenizer-qwen3': 'qwen2', 'tokenizer-deepseek_v3': 'deepseek-v3'}
# Dequantized error bounds, relative to the RMS of the weights (measured: q4_K ~0.09, q6_K ~0.02).
RMS_REL = {Q.Q8_0: 0.01, Q.Q4_K: 0.12, Q.Q6_K: 0.03}
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5

HF_TO_GGUF = {
    'input_layernorm.weight': 'attn_norm.weight',
    'self_attn.q_proj.weight': 'attn_q.weight',
    'self_attn.k_proj.weight': 'attn_k.weight',
    'self_attn.v_proj.weight': 'attn_v.weight',
    'self_attn.o_proj.weight': 'attn_output.weight',
    'self_attn.q_proj.bias': 'attn_q.bias',
    'self_attn.k_proj.bias': 'attn_k.bias',
    'self_attn.v_proj.bias': 'attn_v.bias',
    'self_attn.q_norm.weight': 'attn_q_norm.weight',
    'self_attn.k_norm.weight': 'attn_k_norm.weight',
    'post_attention_layernorm.weight': 'ffn_norm.weight',
    'mlp.gate_proj.weight': 'ffn_gate.weight',
    'mlp.up_proj.weight': 'ffn_up.weight',
    'mlp.down_proj.weight': 'ffn_down.weight',
}


class Report:
    def __init__(self):
        self.failures = 0

    def check(self, ok, what):
        if not ok:
            self.failures += 1
            print(f'  FAIL {what}')
        return ok


def read_gguf(path):
    """gguf.GGUFReader over a plain ndarray view of its memory map: the same parsing, but without
    np.memmap's per-slice overhead, which makes reading 300k vocabulary strings take ~20 s a file."""
    import gguf.gguf_reader as gr
    orig = gr.np.memmap
    gr.np.memmap = lambda *a, **k: orig(*a, **k).view(np.ndarray)
    try:
        return GGUFReader(path)
    finally:
        gr.np.memmap = orig


def gguf_name(hf):
    if hf == 'model.embed_tokens.weight':
        return 'token_embd.weight'
    if hf == 'model.norm.weight':
        return 'output_norm.weight'
    if hf == 'lm_head.weight':
        return 'output.weight'
    _, _, layer, rest = hf.split('.', 3)
    return f'blk.{layer}.{HF_TO_GGUF[rest]}'


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(cfg):
    """convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors (llama3), in its torch float32 steps.
    Note: it reads original_max_position_embeddings from the top level of config.json (else 8192)."""
    rope = cfg['rope_scaling']
    base = cfg.get('rope_theta', 10000.0)
    dim = cfg.get('head_dim') or cfg['hidden_size'] // cfg['num_attention_heads']
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor = rope.get('factor', 8.0)
    low_freq_factor = rope.get('low_freq_factor', 1.0)
    high_freq_factor = rope.get('high_freq_factor', 4.0)
    old_context_len = cfg.get('original_max_position_embeddings', 8192)
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            out.append(1)
        elif wavelen > low_freq_wavelen:
            out.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(out, dtype=torch.float32).numpy()


def looks_special(t):
    return (t in ('<pad>', '<mask>', '<2mass>', '[@BOS@]') or (t.startswith('<|') and t.endswith('|>'))
            or (t.startswith('<｜') and t.endswith('｜>')) or (t.startswith('<unused') and t.endswith('>')))


def vocab_base(tokenizer_json, vocab_size):
    """convert_hf_to_gguf.py's get_vocab_base, on the tokenizers library (what AutoTokenizer wraps)."""
    tok = Tokenizer.from_file(tokenizer_json)
    reverse = {i: t for t, i in tok.get_vocab(with_added_tokens=True).items()}
    added = tok.get_added_tokens_decoder()
    assert max(reverse) < vocab_size
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f'[PAD{i}]')
            types.append(UNUSED)
        elif i in added:
            t = reverse[i]
            if not added[i].normalized:
                t = tok.decode(tok.encode(t, add_special_tokens=False).ids, skip_special_tokens=False)
            if added[i].special or looks_special(t):
                types.append(CONTROL)
            else:
                t = t.replace('\u2581', ' ')
                types.append(USER_DEFINED)
            tokens.append(t)
        else:
            tokens.append(reverse[i])
            types.append(NORMAL)
    return tokens, types


def expected_metadata(cfg, tok_dir, hf_dir, ftype):
    """(value, stored type) per key, as convert_hf_to_gguf.py writes them for this config."""
    a = cfg['model_type']
    f32 = lambda x: float(np.float32(x))
    m = {
        'general.architecture': (a, V.STRING),
        f'{a}.block_count': (cfg['num_hidden_layers'], V.UINT32),
        f'{a}.context_length': (cfg['max_position_embeddings'], V.UINT32),
        f'{a}.embedding_length': (cfg['hidden_size'], V.UINT32),
        f'{a}.feed_forward_length': (cfg['intermediate_size'], V.UINT32),
        f'{a}.attention.head_count': (cfg['num_attention_heads'], V.UINT32),
        f'{a}.attention.head_count_kv': (cfg['num_key_value_heads'], V.UINT32),
        f'{a}.rope.freq_base': (f32(cfg['rope_theta']), V.FLOAT32),
        f'{a}.attention.layer_norm_rms_epsilon': (f32(cfg['rms_norm_eps']), V.FLOAT32),
        'general.file_type': (FILE_TYPE[ftype], V.UINT32),
        'general.quantization_version': (2, V.UINT32),
    }
    if 'head_dim' in cfg:
        m[f'{a}.attention.key_length'] = (cfg['head_dim'], V.UINT32)
        m[f'{a}.attention.value_length'] = (cfg['head_dim'], V.UINT32)
    if a == 'llama':
        m[f'{a}.vocab_size'] = (cfg['vocab_size'], V.UINT32)
        m[f'{a}.rope.dimension_count'] = (cfg.get('head_dim') or cfg['hidden_size'] // cfg['num_attention_heads'], V.UINT32)
    tokens, types = vocab_base(os.path.join(tok_dir, 'tokenizer.json'), cfg['vocab_size'])
    m['tokenizer.ggml.model'] = ('gpt2', V.STRING)
    m['tokenizer.ggml.pre'] = (PRE[os.path.basename(os.path.dirname(tok_dir))], V.STRING)
    m['tokenizer.ggml.tokens'] = (tokens, V.ARRAY)
    m['tokenizer.ggml.token_type'] = (types, V.ARRAY)
    sv = SpecialVocab(hf_dir, load_merges=True, n_vocab=cfg['vocab_size'])
    m['tokenizer.ggml.merges'] = (sv.merges, V.ARRAY)
    names = {'bos': 'bos_token_id', 'eos': 'eos_token_id', 'unk': 'unknown_token_id', 'sep': 'seperator_token_id',
             'pad': 'padding_token_id', 'cls': 'cls_token_id', 'mask': 'mask_token_id'}
    for typ, tid in sv.special_token_ids.items():
        m[f'tokenizer.ggml.{names[typ]}'] = (tid, V.UINT32)
    for typ, val in sv.add_special_token.items():
        m[f'tokenizer.ggml.add_{typ}_token'] = (val, V.BOOL)
    if sv.chat_template is not None:
        m['tokenizer.chat_template'] = (sv.chat_template, V.STRING)
    return m


def field_value(f):
    v = f.contents()
    return v


def check_metadata(r, reader, want, label):
    fields = {k: f for k, f in reader.fields.items() if not k.startswith('GGUF.')}
    extra = set(fields) - set(want) - {'general.type', 'general.name', 'general.alignment'}
    r.check(not extra, f'{label}: unexpected metadata {sorted(extra)}')
    for key, (value, vtype) in want.items():
        f = fields.get(key)
        if not r.check(f is not None, f'{label}: missing metadata {key}'):
            continue
        if not r.check(f.types[0] == vtype, f'{label}: {key} stored as {f.types[0].name}, converter writes {vtype.name}'):
            continue
        got = field_value(f)
        if vtype == V.ARRAY:
            item = {'tokenizer.ggml.tokens': V.STRING, 'tokenizer.ggml.merges': V.STRING, 'tokenizer.ggml.token_type': V.INT32}[key]
            r.check(f.types[1] == item, f'{label}: {key} items stored as {f.types[1].name}, converter writes {item.name}')
            if len(got) != len(value) or got != value:
                bad = next((i for i, (x, y) in enumerate(zip(got, value)) if x != y), min(len(got), len(value)))
                r.check(False, f'{label}: {key} differs first at [{bad}]: {got[bad] if bad < len(got) else None!r} '
                               f'vs converter {value[bad] if bad < len(value) else None!r} ({len(got)} vs {len(value)} entries)')
        else:
            r.check(got == value, f'{label}: {key} = {got!r}, converter writes {value!r}')
    return fields


def hf_tensors(hf_dir):
    """name → float32 array (HF shape) from a single or sharded safetensors folder."""
    out = {}
    idx = os.path.join(hf_dir, 'model.safetensors.index.json')
    files = sorted(set(json.load(open(idx))['weight_map'].values())) if os.path.exists(idx) else ['model.safetensors']
    for fn in files:
        with safe_open(os.path.join(hf_dir, fn), framework='pt') as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
    return out


def check_safetensors_layout(r, path, label):
    """The safetensors library's layout: header {__metadata__, tensors sorted by name}, data in that
    order and contiguous, header padded with spaces to a multiple of 8."""
    with open(path, 'rb') as fh:
        n = struct.unpack('<Q', fh.read(8))[0]
        raw = fh.read(n)
        size = os.fstat(fh.fileno()).st_size
    r.check(n % 8 == 0 and raw.rstrip(b' ') == raw.rstrip(), f'{label}: header length {n} not padded to 8 with spaces')
    header = json.loads(raw)
    keys = list(header)
    r.check(keys[0] == '__metadata__' and header['__metadata__'] == {'format': 'pt'}, f'{label}: __metadata__ is not first / not {{"format": "pt"}}')
    names = keys[1:]
    r.check(names == sorted(names), f'{label}: tensors not sorted by name')
    off = 0
    for k in names:
        b, e = header[k]['data_offsets']
        r.check(b == off, f'{label}: {k} starts at {b}, expected {off}')
        off = e
    r.check(8 + n + off == size, f'{label}: {size} bytes, header says {8 + n + off}')


def check_hf_copies(r, gen, man):
    base_cache = {}
    for model, spec in man['models'].items():
        if not spec['hf']:
            continue
        base_dir = os.path.join(gen, spec['hf'][0]['name'])
        if not os.path.isdir(base_dir):
            print(f'{model}: no HF folder, skipped')
            continue
        base = hf_tensors(base_dir)
        base_cache[model] = base
        base_cfg = json.load(open(os.path.join(base_dir, 'config.json')))
        for h in spec['hf']:
            d = os.path.join(gen, h['name'])
            if not os.path.isdir(d):
                print(f'{h["name"]}: missing, skipped')
                continue
            before = r.failures
            cfg = json.load(open(os.path.join(d, 'config.json')))
            want_dtype = {'F32': 'float32', 'F16': 'float16', 'BF16': 'bfloat16'}[h['dtype']]
            r.check(cfg.get('torch_dtype', cfg.get('dtype')) == want_dtype, f'{h["name"]}: config dtype {cfg.get("torch_dtype", cfg.get("dtype"))}')
            strip = lambda c: {k: v for k, v in c.items() if k not in ('torch_dtype', 'dtype')}
            r.check(strip(cfg) == strip(base_cfg), f'{h["name"]}: config.json differs from {spec["hf"][0]["name"]} beyond the dtype')
            st_files = [f for f in os.listdir(d) if f.endswith('.safetensors')]
            for fn in st_files:
                check_safetensors_layout(r, os.path.join(d, fn), f'{h["name"]}/{fn}')
            if h['shards'] > 1:
                r.check(len(st_files) == h['shards'], f'{h["name"]}: {len(st_files)} shards')
                index = json.load(open(os.path.join(d, 'model.safetensors.index.json')))
                sizes = 0
                for fn in st_files:
                    with safe_open(os.path.join(d, fn), framework='pt') as f:
                        for k in f.keys():
                            r.check(index['weight_map'].get(k) == fn, f'{h["name"]}: weight_map[{k}] is not {fn}')
                            t = f.get_tensor(k)
                            sizes += t.numel() * t.element_size()
                r.check(index['metadata']['total_size'] == sizes, f'{h["name"]}: total_size {index["metadata"]["total_size"]}, tensors hold {sizes}')
            got = hf_tensors(d)
            r.check(set(got) == set(base), f'{h["name"]}: tensor names differ from the f32 copy')
            for k, t in base.items():
                want = {'F32': t, 'F16': t.half(), 'BF16': t.bfloat16()}[h['dtype']]
                g = got.get(k)
                if g is None:
                    continue
                r.check(g.dtype == want.dtype and g.shape == want.shape and torch.equal(g, want),
                        f'{h["name"]}: {k} is not the {h["dtype"]} rounding of the f32 weights')
            # Shapes against config.json.
            c = base_cfg
            H, L = c['hidden_size'], c['num_hidden_layers']
            hd = c.get('head_dim') or H // c['num_attention_heads']
            r.check(tuple(got['model.embed_tokens.weight'].shape) == (c['vocab_size'], H), f'{h["name"]}: embed_tokens shape')
            r.check(tuple(got[f'model.layers.{L - 1}.self_attn.k_proj.weight'].shape) == (c['num_key_value_heads'] * hd, H), f'{h["name"]}: k_proj shape')
            r.check(('lm_head.weight' in got) == (not c['tie_word_embeddings']), f'{h["name"]}: lm_head present iff untied')
            if r.failures == before:
                print(f'{h["name"]}: OK ({len(got)} tensors, {h["dtype"]}, {h["shards"]} file(s))')
    return base_cache


def check_gguf(r, gen, man, base_cache):
    f32_refs = {}
    for model, spec in man['models'].items():
        cfg = spec['config']
        tok_dir = os.path.join(ROOT, spec['tokenizer_dir'])
        # SpecialVocab reads tokenizer_config.json, tokenizer.json and config.json from one folder.
        hf_like = tempfile.mkdtemp(prefix='tiny-hf-')
        try:
            for fn in ('tokenizer.json', 'tokenizer_config.json'):
                shutil.copy(os.path.join(tok_dir, fn), hf_like)
            json.dump(cfg, open(os.path.join(hf_like, 'config.json'), 'w'))
            common = expected_metadata(cfg, tok_dir, hf_like, 'f32')
            want_meta = {g['type']: {**common, 'general.file_type': (FILE_TYPE[g['type']], V.UINT32)} for g in spec['gguf']}
        finally:
            shutil.rmtree(hf_like)
        hf = base_cache.get(model)
        hf = {k: v.numpy() for k, v in hf.items()} if hf is not None else None
        for g in spec['gguf']:
            path = os.path.join(gen, g['name'])
            if not os.path.exists(path):
                print(f'{g["name"]}: missing, skipped')
                continue
            before = r.failures
            label = g['name']
            reader = read_gguf(path)
            check_our_reader(r, path, reader)
            check_metadata(r, reader, want_meta[g['type']], label)
            tensors = {t.name: t for t in reader.tensors}
            # The reference: the HF weights, else (the GGUF-only model) its f32 GGUF.
            if hf is not None:
                ref = {}
                for k, w in hf.items():
                    if cfg['model_type'] == 'llama' and k.endswith('q_proj.weight'):
                        w = permute(w, cfg['num_attention_heads'])
                    if cfg['model_type'] == 'llama' and k.endswith('k_proj.weight'):
                        w = permute(w, cfg['num_key_value_heads'])
                    ref[gguf_name(k)] = w
            elif g['type'] == 'f32':
                ref = {n: t.data.reshape(tuple(reversed([int(x) for x in t.shape]))) for n, t in tensors.items() if n != 'rope_freqs.weight'}
                f32_refs[model] = ref
            else:
                ref = f32_refs.get(model)
                if ref is None:
                    r.check(False, f'{label}: no f32 reference')
                    continue
            if cfg.get('rope_scaling', {}) and cfg['rope_scaling'].get('rope_type') == 'llama3':
                ref = dict(ref)
                ref['rope_freqs.weight'] = llama3_rope_factors(cfg)
            # Names and the tensors a converter run would produce from config.json.
            L = cfg['num_hidden_layers']
            want_names = {'token_embd.weight', 'output_norm.weight'} | ({'output.weight'} if not cfg['tie_word_embeddings'] else set())
            for i in range(L):
                want_names |= {f'blk.{i}.{n}' for n in ('attn_norm.weight', 'attn_q.weight', 'attn_k.weight', 'attn_v.weight', 'attn_output.weight',
                                                       'ffn_norm.weight', 'ffn_gate.weight', 'ffn_up.weight', 'ffn_down.weight')}
                if cfg['model_type'] == 'qwen2':
                    want_names |= {f'blk.{i}.attn_q.bias', f'blk.{i}.attn_k.bias', f'blk.{i}.attn_v.bias'}
                if cfg['model_type'] == 'qwen3':
                    want_names |= {f'blk.{i}.attn_q_norm.weight', f'blk.{i}.attn_k_norm.weight'}
            if 'rope_freqs.weight' in ref:
                want_names.add('rope_freqs.weight')
            r.check(set(tensors) == want_names, f'{label}: tensors {sorted(set(tensors) ^ want_names)} differ from the converter\'s set')
            worst = {}
            for name, t in tensors.items():
                if name not in ref:
                    continue
                w = np.asarray(ref[name], dtype=np.float32)
                shape = [int(x) for x in t.shape]
                r.check(shape == list(reversed(w.shape)), f'{label}: {name} ggml shape {shape}, HF shape {list(w.shape)} reversed')
                keep_f32 = w.ndim <= 1 or name.endswith('_norm.weight')
                qt = Q.F32 if keep_f32 else QTYPE[g['type']]
                if not r.check(t.tensor_type == qt, f'{label}: {name} is {t.tensor_type.name}, converter writes {qt.name}'):
                    continue
                w2 = w.reshape(-1, w.shape[-1])
                if qt == Q.F32:
                    got = np.asarray(t.data, dtype=np.float32).reshape(w2.shape)
                    r.check(np.array_equal(got, w2), f'{label}: {name} F32 data differs from the reference (max {np.abs(got - w2).max():.3g})')
                elif qt == Q.F16:
                    got = np.asarray(t.data).reshape(w2.shape)
                    r.check(np.array_equal(got.view(np.uint16), w2.astype(np.float16).view(np.uint16)), f'{label}: {name} F16 data is not numpy\'s rounding')
                else:
                    raw = np.asarray(t.data, dtype=np.uint8).reshape(w2.shape[0], -1)
                    deq = dequantize(raw, qt).reshape(w2.shape)
                    if qt == Q.Q8_0:
                        r.check(np.array_equal(raw, quantize(w2, qt)), f'{label}: {name} Q8_0 bytes differ from gguf.quants.quantize')
                    rms = float(np.sqrt(np.mean(w2.astype(np.float64) ** 2)))
                    err = float(np.sqrt(np.mean((deq.astype(np.float64) - w2) ** 2))) / rms
                    worst[qt.name] = max(worst.get(qt.name, 0.0), err)
                    r.check(err < RMS_REL[qt], f'{label}: {name} {qt.name} RMS error {err:.4f} of the weights\' RMS (bound {RMS_REL[qt]})')
                    # Every block within its own range: a scale/min written wrong shows as a far-off block.
                    blk = 256 if qt in (Q.Q4_K, Q.Q6_K) else 32
                    wb, db = w2.reshape(-1, blk), deq.reshape(-1, blk)
                    amax = np.abs(wb).max(axis=1)
                    r.check(bool((np.abs(db - wb).max(axis=1) <= 0.25 * amax + 1e-6).all()), f'{label}: {name} some {qt.name} block is far off')
            if 'rope_freqs.weight' in tensors:
                rf = np.asarray(tensors['rope_freqs.weight'].data, dtype=np.float32)
                # The GGUF's factors against transformers' own llama3 frequencies: base / factor ≈ inv_freq.
                from transformers import LlamaConfig
                from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
                lc = LlamaConfig(**{k: v for k, v in cfg.items() if k not in ('architectures', 'transformers_version', 'torch_dtype')})
                inv, _ = ROPE_INIT_FUNCTIONS['llama3'](lc, 'cpu')
                dim = cfg['head_dim']
                base = 1.0 / (cfg['rope_theta'] ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
                rel = np.abs(base / rf - inv.numpy().astype(np.float64)) / inv.numpy()
                r.check(rel.max() < 1e-6, f'{label}: rope_freqs disagree with transformers\' llama3 inv_freq (rel {rel.max():.3g})')
                r.check(bool((rf != 1).any() and (rf != cfg['rope_scaling']['factor']).any()), f'{label}: rope_freqs do not bend: {rf}')
            if r.failures == before:
                extra = ', '.join(f'{k} RMS err {v:.4f}' for k, v in sorted(worst.items()))
                print(f'{label}: OK ({len(tensors)} tensors, {len(reader.fields)} fields, our reader agrees{", " + extra if extra else ""})')


def ours(path):
    """Our GGUF reader's view of a file (tests/oracle/dump_gguf.ts)."""
    out = subprocess.run([NODE, '--import', 'tsx', os.path.join(ROOT, 'tests', 'oracle', 'dump_gguf.ts'), path],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-6 * max(1.0, abs(a))
    return a == b


def check_our_reader(r, path, reader):
    """Our reader sees the metadata and tensor infos gguf-py sees."""
    label = os.path.basename(path)
    before = r.failures
    mine = ours(path)
    for k, f in reader.fields.items():
        if k.startswith('GGUF.'):
            continue
        v = f.contents()
        m = mine['metadata'].get(k)
        if isinstance(v, list) and len(v) > 64:
            ok = isinstance(m, dict) and m['length'] == len(v) and all(same(x, y) for x, y in zip(m['head'], v[:8]))
        elif isinstance(v, list):
            ok = isinstance(m, list) and len(m) == len(v) and all(same(x, y) for x, y in zip(m, v))
        else:
            ok = m is not None and same(m, v)
        r.check(ok, f'{label}: our reader: metadata {k} is {str(m)[:80]}, gguf-py {str(v)[:80]}')
    theirs = {t.name: t for t in reader.tensors}
    r.check(len(mine['tensors']) == len(theirs), f'{label}: our reader sees {len(mine["tensors"])} tensors, gguf-py {len(theirs)}')
    for t in mine['tensors']:
        g = theirs.get(t['name'])
        r.check(g is not None and list(map(int, g.shape)) == t['shape'] and int(g.tensor_type) == t['type']
                and int(g.data_offset) == mine['dataOffset'] + t['offset'], f'{label}: our reader: tensor {t["name"]} info differs')
    r.check(r.failures == before, f'{label}: our reader disagrees with gguf-py')


def check_writer_compat(r):
    """A file written by gguf-py's GGUFWriter reads back through our reader."""
    before = r.failures
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
            r.check(m['metadata'].get(k) == v, f'gguf-py writer: {k} read as {m["metadata"].get(k)!r}, wrote {v!r}')
        shapes = {t['name']: (t['shape'], t['type']) for t in m['tensors']}
        r.check(shapes.get('w') == ([32, 2], 0) and shapes.get('h') == ([32], 1), f'gguf-py writer: tensor infos read as {shapes}')
    if r.failures == before:
        print('gguf-py GGUFWriter file: read back by our reader')


def main(argv):
    gen = GEN
    if argv[:1] == ['--gen']:
        gen = os.path.abspath(argv[1])
    man_path = os.path.join(gen, 'MANIFEST.json')
    if not os.path.exists(man_path):
        print(f'no {man_path}: run node --import tsx tests/fixtures/make-tiny-models.ts', file=sys.stderr)
        return 2
    man = json.load(open(man_path))
    r = Report()
    base = check_hf_copies(r, gen, man)
    check_gguf(r, gen, man, base)
    check_writer_compat(r)
    if r.failures:
        print(f'{r.failures} problems')
        return 1
    print('all generated files check out')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
