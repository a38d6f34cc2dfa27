"""Golden outputs of the tiny models from Hugging Face transformers itself, in float64.

    .venv/bin/python tests/oracle/hf_golden.py           # write tests/fixtures/golden/<model>.json
    .venv/bin/python tests/oracle/hf_golden.py --check   # regenerate and fail on drift

Per model and text: the token ids (the Rust `tokenizers` library on tokenizer.json, plus the BOS
that tokenizer_config's add_bos_token asks for: transformers 5's LlamaTokenizer mangles the
DeepSeek byte-level tokenizer, so it is not the oracle for ids), and per position
the logsumexp, sum and sum of squares over the full vocabulary, the top 16 (id, logit), and the
logits at fixed probe ids; plus 8 greedy tokens with the top-2 margin of each step.
"""
import json
import math
import os
import sys
import tempfile

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
N_PROBES = 96
N_TOP = 16
N_GREEDY = 8


def probe_ids(vocab):
    # Spread over the vocabulary, deterministic, the same for every position.
    return sorted({(i * 7919 + 13) % vocab for i in range(N_PROBES)})


def golden(name):
    d = os.path.join(GEN, name)
    tok = AutoTokenizer.from_pretrained(d)  # for the chat template only
    rust = Tokenizer.from_file(os.path.join(d, 'tokenizer.json'))
    with open(os.path.join(d, 'tokenizer_config.json')) as f:
        cfg = json.load(f)
    bos = cfg.get('bos_token')
    bos = bos.get('content') if isinstance(bos, dict) else bos
    bos_id = rust.token_to_id(bos) if (bos and cfg.get('add_bos_token')) else None

    def encode(text, add_special):
        ids = rust.encode(text, add_special_tokens=False).ids
        return ([bos_id] if add_special and bos_id is not None and ids[:1] != [bos_id] else []) + ids
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64, attn_implementation='eager').eval()
    vocab = model.config.vocab_size
    probes = probe_ids(vocab)
    texts = list(TEXTS) + [tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)]
    seqs = []
    for i, text in enumerate(texts):
        ids = encode(text, i < len(TEXTS))
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
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
        'model': name,
        'transformers': transformers.__version__,
        'torch': torch.__version__,
        'dtype': 'float64',
        'vocab_size': vocab,
        'probe_ids': probes,
        'sequences': seqs,
        'greedy': {'tokens': greedy, 'margins': margins},
    }


def write(dirname):
    os.makedirs(dirname, exist_ok=True)
    for name in MODELS:
        g = golden(name)
        with open(os.path.join(dirname, name + '.json'), 'w') as f:
            json.dump(g, f, separators=(',', ':'))
            f.write('\n')


def drift(a, b, path, out):
    """Appends to `out` every place where the committed golden `a` and the fresh `b` differ."""
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or abs(a - b) > 1e-9 * max(1.0, abs(a), abs(b)):
            out.append(f'{path}: committed {a!r}, now {b!r}')
    elif isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in ('transformers', 'torch'):
                continue
            if k not in a or k not in b:
                out.append(f'{path}.{k}: only in one of them')
            else:
                drift(a[k], b[k], f'{path}.{k}', out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f'{path}: length {len(a)} vs {len(b)}')
        for i, (x, y) in enumerate(zip(a, b)):
            drift(x, y, f'{path}[{i}]', out)
    elif a != b:
        out.append(f'{path}: committed {a!r}, now {b!r}')


def main():
    if '--check' not in sys.argv:
        write(OUT)
        print(f'goldens written to {OUT} (transformers {transformers.__version__}, torch {torch.__version__})')
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        write(tmp)
        problems = []
        for name in MODELS:
            committed = os.path.join(OUT, name + '.json')
            if not os.path.exists(committed):
                problems.append(f'{name}: no committed golden')
                continue
            with open(committed) as f, open(os.path.join(tmp, name + '.json')) as g:
                drift(json.load(f), json.load(g), name, problems)
        if problems:
            print(f'golden drift: {len(problems)} differences', *problems[:40], sep='\n  ')
            return 1
    print(f'goldens match transformers {transformers.__version__} (torch {torch.__version__}) for {", ".join(MODELS)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
