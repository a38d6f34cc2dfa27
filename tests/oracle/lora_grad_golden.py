"""LoRA gradient goldens of the tiny models, from transformers + PEFT autograd in float64.

    .venv/bin/python tests/oracle/lora_grad_golden.py           # write tests/fixtures/golden/lora/*
    .venv/bin/python tests/oracle/lora_grad_golden.py --check   # recompute; exit 1 on drift
    options: --gen DIR (the generated models; default tests/fixtures/generated), --models a,b

Per model (qwen2-tiny, qwen3-tiny, llama-tiny; deepseek-v2-lite-tiny and deepseek-v3-tiny from
tests/fixtures/generated-deepseek), loaded with
AutoModelForCausalLM.from_pretrained(dir, dtype=torch.float64, attn_implementation="eager") and
wrapped by peft.get_peft_model with LoraConfig(r=4, lora_alpha=8, lora_dropout=0; the dense
models' seven projections; the deepseek models' q_proj or q_a_proj/q_b_proj, kv_a_proj_with_mqa,
kv_b_proj, o_proj, and gate/up/down_proj, which by PEFT's suffix rule are the dense first layers'
and the shared experts'; qwen3-tiny and deepseek-v3-tiny with use_rslora). PEFT 0.21 rewrites
any gate_proj/up_proj/down_proj target of a transformers-5 DeepSeek (its v4 → v5 MoE conversion,
_convert_peft_config_moe) into the fused routed experts' parameters, dropping the dense layers'
and shared experts' Linear modules it names; that rewrite is switched off here so that PEFT adapts
exactly the modules named, as the engine does:

  lora/<model>/adapter_config.json, adapter_model.safetensors
      the adapter both sides load: A and B drawn N(0, 0.05²) from a fixed torch seed (B non-zero,
      else every dA is 0), rounded to float32 so the f32 file holds exactly what PEFT computes with
  lora/<model>.json
      format, versions, the sequences (HF input_ids + labels, −100 = no loss), loss (the mean
      cross-entropy over every target token of both sequences, as one batch), target_tokens, and
      for every LoRA tensor under its PEFT name: shape, norm, sum, and the values at up to 48
      spread flat indices (idx, val).

Checked by native/tests/test_train_golden.cpp (and `aha grad` in tests/integration).
"""
import json
import math
import os
import sys

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

import golden_cli
import peft.utils.transformers_weight_conversion as peft_conversion

peft_conversion._convert_peft_config_moe = lambda peft_config, model: None  # see the docstring

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, 'tests', 'fixtures', 'generated')
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'golden', 'lora')
MODELS = ['qwen2-tiny', 'qwen3-tiny', 'llama-tiny', 'deepseek-v2-lite-tiny', 'deepseek-v3-tiny']
RSLORA = {'qwen3-tiny', 'deepseek-v3-tiny'}
# deepseek-v3-tiny's routed experts too: PEFT's target_parameters on transformers' fused expert
# weights (ParamWrapper: A [r·E, in], B [out, r·E], expert e's B in the columns k·E + e).
ROUTED = {'deepseek-v3-tiny'}
EXPERT_PARAMS = ['experts.gate_up_proj', 'experts.down_proj']
DS_TARGETS = ['q_proj', 'q_a_proj', 'q_b_proj', 'kv_a_proj_with_mqa', 'kv_b_proj', 'o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj',
              'shared_experts.gate_proj', 'shared_experts.up_proj', 'shared_experts.down_proj']
TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
RANK, ALPHA = 4, 8
N_SAMPLES = 48
REL_TOL = 1e-9
FORMAT = 1
# Two sequences: a prompt (no loss) then a completion, and one scored on every token.
SEQUENCES = [
    {'input_ids': [9707, 11, 1879, 0, 374, 264, 1273, 315, 279], 'labels': [-100, -100, -100, -100, 374, 264, 1273, 315, 279]},
    {'input_ids': [40, 1079, 16, 17, 18, 19], 'labels': [40, 1079, 16, 17, 18, 19]},
]


def sample_indices(n):
    return sorted({(i * 7919 + 13) % n for i in range(min(n, N_SAMPLES))})


def model_dir(gen, name):
    """The dense tiny models live in `gen`, the deepseek ones beside it (make-tiny-deepseek.ts)."""
    if name.startswith('deepseek'):
        return os.path.join(os.path.dirname(gen), 'generated-deepseek', name)
    return os.path.join(gen, name)


def golden(gen, name, adapter_dir):
    torch.manual_seed(0)
    deepseek = name.startswith('deepseek')
    # transformers' eager expert loop for the deepseek models (its default grouped_mm has no float64)
    extra = {'experts_implementation': 'eager'} if deepseek else {}
    model = AutoModelForCausalLM.from_pretrained(model_dir(gen, name), dtype=torch.float64, attn_implementation='eager', **extra)
    cfg = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=DS_TARGETS if deepseek else TARGETS, lora_dropout=0.0, use_rslora=(name in RSLORA),
                     target_parameters=EXPERT_PARAMS if name in ROUTED else None, task_type='CAUSAL_LM', base_model_name_or_path=name)
    model = get_peft_model(model, cfg)
    model.eval()
    g = torch.Generator().manual_seed(1234)
    lora = sorted((n, p) for n, p in model.named_parameters() if 'lora_' in n)
    if deepseek:
        c = model.config
        per_attn = 5 if c.q_lora_rank else 4
        dense = c.first_k_dense_replace
        moe = c.num_hidden_layers - dense
        want = 2 * (per_attn * c.num_hidden_layers + 3 * dense + ((3 if c.n_shared_experts else 0) + (2 if name in ROUTED else 0)) * moe)
        assert len(lora) == want, (len(lora), want, [n for n, _ in lora])
    else:
        assert len(lora) == 2 * len(TARGETS) * model.config.num_hidden_layers, [n for n, _ in lora]
    with torch.no_grad():
        for _, p in lora:
            p.copy_((torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.05).double())
    for _, p in lora:
        assert p.dtype == torch.float64 and p.requires_grad
    # The adapter as PEFT names it, in float32 (exactly the values above).
    os.makedirs(adapter_dir, exist_ok=True)
    state = get_peft_model_state_dict(model)
    save_file({k: v.float().contiguous() for k, v in state.items()}, os.path.join(adapter_dir, 'adapter_model.safetensors'), metadata={'format': 'pt'})
    model.peft_config['default'].base_model_name_or_path = name  # not this machine's path
    model.peft_config['default'].save_pretrained(adapter_dir)
    os.chmod(os.path.join(adapter_dir, 'adapter_model.safetensors'), 0o644)

    n_targets = sum(sum(1 for l in s['labels'][1:] if l != -100) for s in SEQUENCES)
    total = 0.0
    for s in SEQUENCES:
        out = model(input_ids=torch.tensor([s['input_ids']]), labels=torch.tensor([s['labels']]))
        n = sum(1 for l in s['labels'][1:] if l != -100)
        total = total + out.loss * (n / n_targets)  # HF's loss is the mean over the sequence's targets
    total.backward()
    loss = float(total)
    assert math.isfinite(loss)

    grads = {}
    for n, p in lora:
        key = n.replace('.default.weight', '.weight')  # the parameter's name in the adapter file
        assert key in state, key
        gr = p.grad.detach().reshape(-1)
        idx = sample_indices(gr.numel())
        grads[key] = {
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
        'peft': peft.__version__,
        'rank': RANK,
        'alpha': ALPHA,
        'use_rslora': name in RSLORA,
        'sequences': SEQUENCES,
        'loss': loss,
        'target_tokens': n_targets,
        'grads': grads,
    }


def write(gen, out, models):
    os.makedirs(out, exist_ok=True)
    for name in models:
        g = golden(gen, name, os.path.join(out, name))
        with open(os.path.join(out, name + '.json'), 'w') as f:
            json.dump(g, f, separators=(',', ':'))
            f.write('\n')


def main(argv):
    return golden_cli.run(argv, write=write, out_dir=OUT, gen=GEN, models=MODELS, label='LoRA gradient', rel_tol=REL_TOL, skip=('transformers', 'torch', 'peft'),
                          where=model_dir)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
