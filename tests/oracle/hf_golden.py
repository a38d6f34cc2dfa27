"""Golden outputs of the tiny models, from Hugging Face transformers itself, in float64.

    .venv/bin/python tests/oracle/hf_golden.py           # write tests/fixtures/golden/<model>.json
    .venv/bin/python tests/oracle/hf_golden.py --check   # regenerate into a temp dir; exit 1 on drift
    options: --gen DIR (the generated models; default tests/fixtures/generated), --out DIR,
             --models a,b

The models come from tests/fixtures/make-tiny-models.ts; each is loaded with
AutoModelForCausalLM.from_pretrained(dir, dtype=torch.float64, attn_implementation="eager").

Per model, one JSON file (see tests/oracle/README.md for the fields): for each of three texts
(two plain, one rendered with the model's chat template) the token ids, and at every position the
logsumexp, sum and sum of squares of all logits, the top 16 (id, logit) and the logits at fixed
probe ids; then 8 greedy tokens after the first text with each step's top-2 margin.

Token ids come from the Rust `tokenizers` library on tokenizer.json plus the BOS that
tokenizer_config's add_bos_token asks for (transformers 5 loads the DeepSeek-V3 tokenizer as a
LlamaTokenizer and mangles its byte-level vocabulary, so it is not the oracle for ids); the chat
text is rendered by transformers' apply_chat_template.
"""
import hashlib
import json
import math
import os
import sys
import tempfile

import tokenizers
import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, 'tests', 'fixtures', 'generated')
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'golden')
MODELS = ['qwen2-tiny', 'qwen3-tiny', 'llama-tiny']
TEXTS = [
    'The derivative of x^2 is 2x, so',
    'def add(a, b):\n    return a + b  # 数学 🤔',
]
CHAT = [{'role': 'user', 'content': 'What is 17 * 23? Think step by step.'}]
N_SPREAD = 224
N_TOP = 16
N_GREEDY = 8
REL_TOL = 1e-9
FORMAT = 2
# How every oracle model is loaded (hf_golden_deepseek.py adds the plain per-expert loop for MoE).
LOAD_KWARGS = {'dtype': torch.float64, 'attn_implementation': 'eager'}


def probe_ids(vocab, specials):
    """The same ids at every position: spread over the vocabulary, plus the special tokens, the
    first and last ids, and the first ids past the tokenizer's (padding rows of the embedding)."""
    ids = {(i * 7919 + 13) % vocab for i in range(N_SPREAD)}
    ids |= {i for i in specials if i is not None and 0 <= i < vocab}
    ids |= {0, 1, 2, vocab - 2, vocab - 1}
    return sorted(ids)


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def golden(gen, name):
    d = os.path.join(gen, name)
    tok = AutoTokenizer.from_pretrained(d)  # for the chat template only
    rust = Tokenizer.from_file(os.path.join(d, 'tokenizer.json'))
    with open(os.path.join(d, 'tokenizer_config.json')) as f:
        tcfg = json.load(f)
    bos = tcfg.get('bos_token')
    bos = bos.get('content') if isinstance(bos, dict) else bos
    bos_id = rust.token_to_id(bos) if (bos and tcfg.get('add_bos_token')) else None

    def encode(text, add_special):
        ids = rust.encode(text, add_special_tokens=False).ids
        return ([bos_id] if add_special and bos_id is not None and ids[:1] != [bos_id] else []) + ids

    model = AutoModelForCausalLM.from_pretrained(d, **LOAD_KWARGS).eval()
    cfg = model.config
    vocab = cfg.vocab_size
    eos = cfg.eos_token_id if isinstance(cfg.eos_token_id, list) else [cfg.eos_token_id]
    specials = [cfg.bos_token_id, *eos, rust.get_vocab_size(with_added_tokens=True) - 1, rust.get_vocab_size(with_added_tokens=True)]
    probes = probe_ids(vocab, specials)
    texts = list(TEXTS) + [tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)]
    seqs = []
    for i, text in enumerate(texts):
        ids = encode(text, i < len(TEXTS))
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        assert logits.dtype == torch.float64 and torch.isfinite(logits).all(), f'{name}: non-finite logits'
        positions = []
        for row in logits:
            top = torch.topk(row, N_TOP)
            positions.append({
                'logsumexp': float(torch.logsumexp(row, 0)),
                'sum': float(row.sum()),
                'sumsq': float((row * row).sum()),
                'top': [[int(j), float(v)] for v, j in zip(top.values, top.indices)],
                'probes': [float(row[j]) for j in probes],
            })
        seqs.append({'text': text, 'chat': i >= len(TEXTS), 'tokens': ids, 'positions': positions})
    # Greedy continuation of the first sequence, with each step's top-2 margin.
    ids = list(seqs[0]['tokens'])
    greedy, margins = [], []
    with torch.no_grad():
        for _ in range(N_GREEDY):
            row = model(torch.tensor([ids])).logits[0, -1]
            top = torch.topk(row, 2)
            greedy.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            ids.append(greedy[-1])
    return {
        'format': FORMAT,
        'model': name,
        'transformers': transformers.__version__,
        'torch': torch.__version__,
        'tokenizers': tokenizers.__version__,
        'dtype': 'float64',
        'weights_sha256': sha256(os.path.join(d, 'model.safetensors')),
        'vocab_size': vocab,
        'probe_ids': probes,
        'sequences': seqs,
        'greedy': {'tokens': greedy, 'margins': margins},
    }


def write(gen, dirname, models):
    os.makedirs(dirname, exist_ok=True)
    for name in models:
        g = golden(gen, name)
        with open(os.path.join(dirname, name + '.json'), 'w') as f:
            json.dump(g, f, separators=(',', ':'), ensure_ascii=False)
            f.write('\n')


VERSION_KEYS = ('transformers', 'torch', 'tokenizers')


def drift(a, b, path, out):
    """Appends to `out` every place where the committed golden `a` and the fresh `b` differ."""
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        if a != b:
            out.append(f'{path}: committed {a!r}, now {b!r}')
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            if a != b:
                out.append(f'{path}: committed {a}, now {b}')
        elif not (math.isfinite(a) and math.isfinite(b)) or abs(a - b) > REL_TOL * max(1.0, abs(a), abs(b)):
            out.append(f'{path}: committed {a!r}, now {b!r} (rel. diff {abs(a - b) / max(1.0, abs(a), abs(b)):.3g})')
    elif isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in VERSION_KEYS:
                continue
            if k not in a or k not in b:
                out.append(f'{path}.{k}: only in the {"committed" if k in a else "fresh"} golden')
            else:
                drift(a[k], b[k], f'{path}.{k}', out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f'{path}: length {len(a)} committed, {len(b)} now')
        for i, (x, y) in enumerate(zip(a, b)):
            drift(x, y, f'{path}[{i}]', out)
    elif a != b:
        out.append(f'{path}: committed {a!r}, now {b!r}')


def where(path):
    """'qwen2-tiny.sequences[1].positions[3].probes[7]' → 'qwen2-tiny, sequence 1, position 3: probes[7]'."""
    import re
    m = re.match(r'([^.]+)\.sequences\[(\d+)\]\.positions\[(\d+)\]\.(.*)', path)
    if m:
        return f'{m[1]}, sequence {m[2]}, position {m[3]}: {m[4]}'
    return path


def main(argv):
    gen, out, models, check = GEN, OUT, MODELS, False
    args = iter(argv)
    for a in args:
        if a == '--check':
            check = True
        elif a == '--gen':
            gen = os.path.abspath(next(args))
        elif a == '--out':
            out = os.path.abspath(next(args))
        elif a == '--models':
            models = next(args).split(',')
        else:
            print(f'unknown argument {a}', file=sys.stderr)
            return 2
    missing = [m for m in models if not os.path.isdir(os.path.join(gen, m))]
    if missing:
        print(f'missing generated models {missing} in {gen}: run node --import tsx tests/fixtures/make-tiny-models.ts', file=sys.stderr)
        return 2
    versions = f'transformers {transformers.__version__}, torch {torch.__version__}, tokenizers {tokenizers.__version__}'
    if not check:
        write(gen, out, models)
        print(f'goldens written to {out} ({versions})')
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        write(gen, tmp, models)
        failed = False
        for name in models:
            committed = os.path.join(out, name + '.json')
            if not os.path.exists(committed):
                print(f'{name}: no committed golden at {committed}')
                failed = True
                continue
            with open(committed) as f, open(os.path.join(tmp, name + '.json')) as g:
                a, b = json.load(f), json.load(g)
            problems = []
            drift(a, b, name, problems)
            if not problems:
                print(f'{name}: matches ({len(b["sequences"])} sequences, {sum(len(s["positions"]) for s in b["sequences"])} positions, {len(b["greedy"]["tokens"])} greedy steps)')
                continue
            failed = True
            print(f'{name}: DRIFT, {len(problems)} differences (golden made with transformers {a.get("transformers")}, torch {a.get("torch")}; now {versions})')
            if a.get('weights_sha256') != b.get('weights_sha256'):
                print(f'  the generated weights differ from those the golden was made from: the generator changed; '
                      f'regenerate the goldens (hf_golden.py without --check) and commit them with it')
            for p in problems[:30]:
                print('  ' + where(p))
            if len(problems) > 30:
                print(f'  ... {len(problems) - 30} more')
    if failed:
        return 1
    print(f'goldens match ({versions})')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
