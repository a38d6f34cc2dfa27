"""Logits of the tiny models with adapters that OUR engine wrote, loaded by PEFT: proves that
PEFT reads our adapter files and that the engine's unmerged LoRA forward computes what PEFT does.

    .venv/bin/python tests/oracle/lora_logits_golden.py           # write tests/fixtures/golden/lora-logits/*.json
    .venv/bin/python tests/oracle/lora_logits_golden.py --check   # recompute; exit 1 on drift

Inputs (committed): tests/fixtures/golden/lora-logits/<model>/ — adapter_config.json and
adapter_model.safetensors written by `aha train sft` (six steps on lora-logits/train.jsonl, so
B ≠ 0): qwen2-tiny r=8 all seven projections; qwen3-tiny r=4 rsLoRA on q/v/o/down; llama-tiny r=8
all seven; deepseek-v3-tiny r=4 on every linear module and the routed experts
(--targets all-linear,experts.gate_up_proj,experts.down_proj). Each is loaded with
peft.PeftModel.from_pretrained onto AutoModelForCausalLM.from_pretrained(model, dtype=float64,
attn_implementation="eager"; the DeepSeek with transformers' eager expert loop); the script checks
that every tensor of the file landed in a LoRA layer (and that B is non-zero). PEFT 0.21 would
rewrite the DeepSeek adapter's mlp.gate_proj-style targets into the fused routed experts (its
v4 → v5 MoE conversion, _convert_peft_config_moe): switched off here, as a PEFT user must for such
an adapter (attention-only and routed-expert adapters load as they are).

Output <model>.json: format, versions, tokens, and per position: logsumexp over the vocabulary,
the top 16 [id, logit], and the logits at `probe_ids` (64 spread ids); base_logsumexp (the same
position without the adapter) shows the adapter matters.

Checked by native/tests/test_train_infer.cpp (HF folders and llama's GGUF copy).
"""
import json
import math
import os
import sys

import peft
import torch
import transformers
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
import peft.utils.transformers_weight_conversion as peft_conversion

peft_conversion._convert_peft_config_moe = lambda peft_config, model: None  # see the docstring

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, 'tests', 'fixtures', 'generated')
DIR = os.path.join(ROOT, 'tests', 'fixtures', 'golden', 'lora-logits')
MODELS = ['qwen2-tiny', 'qwen3-tiny', 'llama-tiny', 'deepseek-v3-tiny']
GEN_DS = os.path.join(ROOT, 'tests', 'fixtures', 'generated-deepseek')
TOKENS = [9707, 11, 1879, 0, 374, 264, 1273, 315, 279, 40, 1079, 16]
REL_TOL = 1e-9


def golden(name):
    ds = name.startswith('deepseek')
    base = AutoModelForCausalLM.from_pretrained(os.path.join(GEN_DS if ds else GEN, name), dtype=torch.float64, attn_implementation='eager',
                                                **({'experts_implementation': 'eager'} if ds else {}))
    base.eval()
    with torch.no_grad():
        base_logits = base(input_ids=torch.tensor([TOKENS])).logits[0]
    adapter = os.path.join(DIR, name)
    model = PeftModel.from_pretrained(base, adapter)
    model = model.double()
    model.eval()
    # every tensor of our file is in the model (PEFT's key mapping: ".weight" → ".default.weight")
    state = dict(model.named_parameters())
    ours = load_file(os.path.join(adapter, 'adapter_model.safetensors'))
    for k, v in ours.items():
        key = k.replace('.lora_A.weight', '.lora_A.default.weight').replace('.lora_B.weight', '.lora_B.default.weight')
        assert key in state, f'{k} did not load into the PEFT model'
        assert torch.equal(state[key].float(), v), f'{k} loaded with other values'
    assert sum(1 for k in state if 'lora_' in k) == len(ours), 'the PEFT model has LoRA tensors our file lacks'
    assert any(v.abs().max() > 0 for k, v in ours.items() if 'lora_B' in k), 'B is zero: the golden would not test the adapter'
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([TOKENS])).logits[0]
    V = logits.shape[1]
    probes = sorted({(i * 2654435761) % V for i in range(64)})
    positions = []
    for t in range(len(TOKENS)):
        row = logits[t]
        top = torch.topk(row, 16)
        positions.append({
            'logsumexp': float(torch.logsumexp(row, 0)),
            'base_logsumexp': float(torch.logsumexp(base_logits[t], 0)),
            'max_abs': float(row.abs().max()),
            'top': [[int(i), float(v)] for v, i in zip(top.values, top.indices)],
            'probes': [float(row[i]) for i in probes],
        })
    return {'format': 1, 'model': name, 'dtype': 'float64', 'transformers': transformers.__version__, 'torch': torch.__version__,
            'peft': peft.__version__, 'tokens': TOKENS, 'probe_ids': probes, 'positions': positions}


def close(a, b):
    if isinstance(a, dict):
        return all(k in ('transformers', 'torch', 'peft') or close(a[k], b[k]) for k in a) and set(a) == set(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) <= REL_TOL * max(1.0, abs(a), abs(b))
    return a == b


def main(argv):
    check = '--check' in argv
    bad = 0
    for name in MODELS:
        g = golden(name)
        path = os.path.join(DIR, name + '.json')
        if check:
            with open(path) as f:
                ok = close(json.load(f), g)
            print(f'{name}: {"matches" if ok else "DRIFTED"}')
            bad += not ok
        else:
            with open(path, 'w') as f:
                json.dump(g, f, separators=(',', ':'))
                f.write('\n')
            print(f'wrote {path}')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
