"""Full-training gradient goldens of the tiny models: every parameter's gradient from transformers
autograd in float64 (embeddings, every projection and bias, norms, lm_head or the tied table).

    .venv/bin/python tests/oracle/full_grad_golden.py           # write tests/fixtures/golden/full/*.json
    .venv/bin/python tests/oracle/full_grad_golden.py --check   # recompute; exit 1 on drift
    options: --gen DIR (the generated models; default tests/fixtures/generated), --models a,b

Per model (qwen2-tiny: qkv biases, untied; qwen3-tiny: q/k norms, tied embeddings; llama-tiny:
llama3 rope scaling), loaded with AutoModelForCausalLM.from_pretrained(dir, dtype=torch.float64,
attn_implementation="sdpa") with its rotary cos/sin and RMSNorm patched to float64 (transformers
computes both in float32, and eager attention its softmax), every parameter trainable. The two sequences of the LoRA goldens form
one batch; the loss is the mean cross-entropy over all their target tokens, computed in float64
from the logits (transformers' own loss upcasts them to float32 only).

  full/<model>.json
      format, versions, the sequences (HF input_ids + labels, -100 = no loss), loss, target_tokens,
      and for every parameter under its HF name (named_parameters: a tied lm_head is the
      embedding's entry, holding both gradients): shape, norm, sum, and the values at up to 24
      spread flat indices plus the 24 largest |gradient| entries (idx, val) — an embedding's
      gradient is non-zero only on the rows of the batch's tokens.

Checked by native/tests/test_train_golden.cpp (HF folders and GGUF copies, f32 and f64).
"""
import math
import os
import sys
from types import MethodType

import torch
import transformers
from transformers import AutoModelForCausalLM

import golden_cli
from grpo_golden import exact_rmsnorm, exact_rotary
from lora_grad_golden import SEQUENCES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, 'tests', 'fixtures', 'generated')
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'golden', 'full')
MODELS = ['qwen2-tiny', 'qwen3-tiny', 'llama-tiny']
N_SPREAD, N_TOP = 24, 24
REL_TOL = 1e-9
FORMAT = 1


def sample_indices(g):
    n = g.numel()
    spread = {(i * 7919 + 13) % n for i in range(min(n, N_SPREAD))}
    top = set(torch.topk(g.abs(), min(n, N_TOP)).indices.tolist())
    return sorted(spread | top)


def golden(gen, name):
    # sdpa: eager attention takes its softmax in float32.
    model = AutoModelForCausalLM.from_pretrained(os.path.join(gen, name), dtype=torch.float64, attn_implementation='sdpa')
    # transformers computes the rotary cos/sin and RMSNorm in float32 even in a float64 model: both
    # patched to float64 (as grpo_golden.py does), so the oracle is exact to float64 rounding.
    for suffix, fn in (('RotaryEmbedding', exact_rotary), ('RMSNorm', exact_rmsnorm)):
        mods = [m for m in model.modules() if type(m).__name__.endswith(suffix)]
        assert mods, suffix
        for m in mods:
            m.forward = MethodType(fn, m)
    model.eval()  # no dropout (there is none at p = 0; eval makes it explicit)
    params = list(model.named_parameters())
    for _, p in params:
        assert p.dtype == torch.float64 and p.requires_grad

    # The cross-entropy in float64 here: transformers' own loss upcasts the logits to float32.
    n_targets = sum(sum(1 for l in s['labels'][1:] if l != -100) for s in SEQUENCES)
    total = 0.0
    for s in SEQUENCES:
        logits = model(input_ids=torch.tensor([s['input_ids']])).logits[0, :-1]
        labels = torch.tensor(s['labels'][1:])
        total = total + torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction='sum') / n_targets
    total.backward()
    loss = total.item()
    assert math.isfinite(loss)

    grads = {}
    for n, p in params:
        gr = p.grad.detach().reshape(-1)
        idx = sample_indices(gr)
        grads[n] = {
            'shape': list(p.shape),
            'norm': float(gr.norm()),
            'sum': float(gr.sum()),
            'idx': idx,
            'val': [float(gr[i]) for i in idx],
        }
    return {
        'format': FORMAT,
        'model': name,
        'dtype': 'float64',
        'transformers': transformers.__version__,
        'torch': torch.__version__,
        'tied': bool(model.config.tie_word_embeddings),
        'sequences': SEQUENCES,
        'loss': loss,
        'target_tokens': n_targets,
        'grads': grads,
    }


def write(gen, out, models):
    import json
    os.makedirs(out, exist_ok=True)
    for name in models:
        with open(os.path.join(out, name + '.json'), 'w') as f:
            json.dump(golden(gen, name), f, separators=(',', ':'))
            f.write('\n')


def main(argv):
    return golden_cli.run(argv, write=write, out_dir=OUT, gen=GEN, models=MODELS, label='full-training gradient', rel_tol=REL_TOL,
                          skip=('transformers', 'torch'))


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
