"""Golden outputs of the tiny DeepSeek-V2/V3 models, from transformers' own DeepseekV2ForCausalLM
and DeepseekV3ForCausalLM in float64 (the same format and drift check as hf_golden.py).

    .venv/bin/python tests/oracle/hf_golden_deepseek.py           # write tests/fixtures/golden/deepseek/<model>.json
    .venv/bin/python tests/oracle/hf_golden_deepseek.py --check   # regenerate into a temp dir; exit 1 on drift
    options: --gen DIR (default tests/fixtures/generated-deepseek), --out DIR, --models a,b

The models come from tests/fixtures/make-tiny-deepseek.ts. Before the goldens, each model is
checked to be one the oracle can be trusted on:
  - every tensor in model.safetensors is loaded into transformers' model and none is missing
    (transformers fuses the per-expert tensors into its 3-D expert weights while loading);
  - the router's choices are clear on the golden sequences: at every token of every MoE layer the
    last chosen expert beats the first unchosen one, and the last chosen group the first unchosen
    group, by at least MIN_MARGIN = 1e-5 (transformers routes in float32 even in a float64 model, so a
    closer call could go either way in the engine's float32).
"""
import os
import sys

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_golden  # noqa: E402

ROOT = hf_golden.ROOT
GEN = os.path.join(ROOT, 'tests', 'fixtures', 'generated-deepseek')
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'golden', 'deepseek')
MODELS = ['deepseek-v2-lite-tiny', 'deepseek-v2-tiny', 'deepseek-v3-tiny', 'deepseek-v3-tiny-dense2', 'deepseek-v3-tiny-bf16']
# A float32 router logit over hidden 64 is off by ~1e-6 at most between two implementations (a score
# by less), so a choice decided by 1e-5 cannot flip.
MIN_MARGIN = 1e-5
# transformers' eager expert loop (its default grouped_mm kernel has no float64)
hf_golden.LOAD_KWARGS = {**hf_golden.LOAD_KWARGS, 'experts_implementation': 'eager'}


def routing_margins(model, ids):
    """The smallest expert and group selection margins over all tokens and MoE layers."""
    cfg = model.config
    worst = {'expert': float('inf'), 'group': float('inf')}

    def hook(gate, args, _out):
        h = args[0].reshape(-1, cfg.hidden_size).to(torch.float32)
        logits = torch.nn.functional.linear(h, gate.weight.to(torch.float32))
        v3 = hasattr(gate, 'e_score_correction_bias')
        scores = logits.sigmoid() + gate.e_score_correction_bias if v3 else logits.softmax(-1)
        E, G = scores.shape[-1], cfg.n_group or 1
        grouped = v3 or getattr(gate, 'topk_method', '') == 'group_limited_greedy'
        if grouped and G > 1:
            gs = scores.view(-1, G, E // G)
            gs = gs.topk(2, dim=-1)[0].sum(-1) if v3 else gs.max(-1).values
            top = gs.sort(-1, descending=True).values
            worst['group'] = min(worst['group'], float((top[:, cfg.topk_group - 1] - top[:, cfg.topk_group]).min()))
            keep = torch.zeros_like(gs).scatter_(1, gs.topk(cfg.topk_group, -1)[1], 1).bool()
            scores = scores.masked_fill(~keep.repeat_interleave(E // G, -1), float('-inf'))
        top = scores.sort(-1, descending=True).values
        k = cfg.num_experts_per_tok
        gap = top[:, k - 1] - top[:, k]
        worst['expert'] = min(worst['expert'], float(gap[torch.isfinite(gap)].min()))

    hooks = [layer.mlp.gate.register_forward_hook(hook) for layer in model.model.layers if hasattr(layer.mlp, 'gate')]
    with torch.no_grad():
        model(torch.tensor([ids]))
    for h in hooks:
        h.remove()
    return worst


def vet(gen, name):
    d = os.path.join(gen, name)
    model, info = AutoModelForCausalLM.from_pretrained(d, output_loading_info=True, **hf_golden.LOAD_KWARGS)
    bad = {k: v for k, v in info.items() if v and k in ('missing_keys', 'unexpected_keys', 'mismatched_keys')}
    if bad:
        raise SystemExit(f'{name}: transformers did not load the checkpoint cleanly: {bad}')
    g = hf_golden.golden(gen, name)
    worst = {'expert': float('inf'), 'group': float('inf')}
    for s in g['sequences'] + [{'tokens': g['sequences'][0]['tokens'] + g['greedy']['tokens']}]:
        m = routing_margins(model, s['tokens'])
        worst = {k: min(worst[k], m[k]) for k in worst}
    if min(worst.values()) < MIN_MARGIN:
        raise SystemExit(f'{name}: a routing choice is a near-tie ({worst}); change the seed')
    print(f'{name}: loaded cleanly; routing margins: expert {worst["expert"]:.3g}, group {worst["group"]:.3g}')


def main(argv):
    gen, rest, models = GEN, [], MODELS
    args = iter(argv)
    for a in args:
        if a == '--gen':
            gen = os.path.abspath(next(args))
        elif a == '--models':
            models = next(args).split(',')
        else:
            rest.append(a)
    missing = [m for m in models if not os.path.isdir(os.path.join(gen, m))]
    if missing:
        print(f'missing generated models {missing} in {gen}: run node --import tsx tests/fixtures/make-tiny-deepseek.ts', file=sys.stderr)
        return 2
    for m in models:
        vet(gen, m)
    if '--out' not in rest:
        rest += ['--out', OUT]
    return hf_golden.main(['--gen', gen, '--models', ','.join(models)] + rest)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
