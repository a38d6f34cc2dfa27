"""GRPO loss goldens: TRL's GRPOTrainer loss code on given rollouts, with transformers + PEFT autograd in float64.

    .venv/bin/python tests/oracle/grpo_golden.py           # write tests/fixtures/golden/grpo/<model>.json
    .venv/bin/python tests/oracle/grpo_golden.py --check   # recompute; exit 1 on drift
    options: --gen DIR (the generated models; default tests/fixtures/generated), --models a,b

No dataset and no generation: the rollouts (prompts, G completions each, rewards, optional old
log-probs) are fixed here, and the trainer's own code computes from them:
  advantages   the lines of GRPOTrainer._generate_and_score_completions that turn rewards into
               advantages (scale_rewards group | batch | none, trl's nanstd), copied verbatim below
               (they sit inside the generation method), and mask_truncated_completions' lines;
  reference    GRPOTrainer._get_per_token_logps_and_entropies with the adapter off (trl's
               use_adapter, as the trainer does for a PEFT model) when beta > 0;
  loss         GRPOTrainer._compute_loss itself, called on a trainer object that holds only the
               attributes it reads (one process, no gradient accumulation, steps_per_generation 1:
               the whole generation batch is one optimizer step), then loss.backward().
The model is the float64 transformers model (sdpa attention) with the PEFT adapter of tests/fixtures/golden/lora/
<model>/ (lora_grad_golden.py writes it), loaded with peft.PeftModel.from_pretrained.

tests/fixtures/golden/grpo/<model>.json: format, versions, model, cases[]:
  name, rollouts        ROLLOUTS.json as `aha grad --grpo` reads it (prompts, completions, rewards,
                        old_logprobs?, truncated?, loss: {type, beta, epsilon, epsilon_high,
                        scale_rewards, temperature, max_completion_length, mask_truncated_completions})
  advantages            [prompts][G]; frac_reward_zero_std
  loss, num_items_in_batch, metrics {kl?, entropy, clip_ratio/*}
  grads                 {PEFT name: shape, norm, sum, idx[≤ 12 spread flat indices], val}

Checked by native/tests/test_grpo_golden.cpp (HF folders and GGUF copies, f32 and f64) and
tests/integration/grpo-grad.test.ts (`aha grad --grpo`).
"""
import json
import math
import os
import sys
from collections import defaultdict
from types import MethodType, SimpleNamespace

import peft
import torch
import transformers
import trl
from peft import PeftModel
from transformers import AutoModelForCausalLM
from trl import GRPOTrainer
from trl.trainer.utils import nanstd, use_adapter

import golden_cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, 'tests', 'fixtures', 'generated')
ADAPTERS = os.path.join(ROOT, 'tests', 'fixtures', 'golden', 'lora')
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'golden', 'grpo')
MODELS = ['qwen2-tiny', 'qwen3-tiny', 'llama-tiny']
N_SAMPLES = 12
REL_TOL = 1e-9
FORMAT = 1
MAX_COMPLETION_LENGTH = 8

# Three prompts of different lengths (TRL left-pads them), four completions each of 1..8 tokens
# (right-padded), ids drawn from the vocabulary with a fixed seed; group 2's rewards are all equal
# (zero std). Some completions end with the model's eos token (not truncated), the rest are
# truncated: mask_truncated_completions drops those.
PROMPT_LENGTHS = [5, 3, 7]
COMPLETION_LENGTHS = [[4, 8, 1, 6], [3, 5, 8, 2], [7, 2, 4, 8]]
ENDS_WITH_EOS = [[True, False, True, False], [False, True, False, True], [True, True, False, False]]
REWARDS = [[1.0, 0.0, 0.5, 1.0], [0.25, 0.25, 0.25, 0.25], [0.0, 2.0, -1.0, 0.75]]


def rollouts_for(vocab, eos):
    g = torch.Generator().manual_seed(7)
    ids = lambda n: [int(x) for x in torch.randint(0, vocab, (n,), generator=g)]
    prompts = [ids(n) for n in PROMPT_LENGTHS]
    completions = []
    for lens, ends in zip(COMPLETION_LENGTHS, ENDS_WITH_EOS):
        group = []
        for n, e in zip(lens, ends):
            c = ids(n)
            if e:
                c[-1] = eos
            elif c[-1] == eos:
                c[-1] = (eos + 1) % vocab
            group.append(c)
        completions.append(group)
    return prompts, completions


# (name, loss options): every loss_type × scale_rewards on-policy (μ = 1, β = 0), then each
# loss_type off-policy (old log-probs: clipping on both sides), with the KL term, asymmetric
# epsilons, temperature 0.7 and truncated completions masked.
def cases(model_name):
    out = []
    off = dict(beta=0.04, epsilon=0.2, epsilon_high=0.28, temperature=0.7, mask_truncated_completions=True, old_logprobs=True)
    if model_name == 'qwen2-tiny':
        for lt in ['grpo', 'bnpo', 'dr_grpo', 'dapo']:
            for sr in ['group', 'batch', 'none']:
                out.append((f'{lt}-{sr}', dict(loss_type=lt, scale_rewards=sr)))
        for lt in ['grpo', 'bnpo', 'dr_grpo', 'dapo']:
            out.append((f'{lt}-offpolicy-kl', dict(off, loss_type=lt, scale_rewards='group')))
    else:
        out.append(('dapo-offpolicy-kl', dict(off, loss_type='dapo', scale_rewards='batch')))
    return out


def advantages_as_trl(rewards, scale_rewards, num_generations):
    """GRPOTrainer._generate_and_score_completions, multi_objective_aggregation='sum_then_normalize', one reward function of weight 1."""
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    if scale_rewards in ['group', 'none']:
        if num_generations > 1:
            std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
            std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
        else:
            std_rewards = torch.zeros_like(rewards)
    elif scale_rewards == 'batch':
        if rewards.numel() > 1:
            std_rewards = nanstd(rewards).expand_as(rewards)
        else:
            std_rewards = torch.zeros_like(rewards)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != 'none':
        advantages = advantages / (std_rewards + 1e-4)
    is_std_zero = torch.isclose(std_rewards, torch.zeros_like(std_rewards))
    return torch.nan_to_num(advantages, nan=0.0), is_std_zero.float().mean().item()


class OneProcess:
    num_processes = 1
    is_main_process = True

    def gather(self, t):
        return t

    def reduce(self, t, reduction='sum'):
        return t

    def unwrap_model(self, m):
        return m


def trainer_for(model, opts):
    """A GRPOTrainer holding only what _compute_loss and _get_per_token_logps_and_entropies read."""
    t = GRPOTrainer.__new__(GRPOTrainer)
    t.model = SimpleNamespace(training=True)  # mode "train" (the model itself stays in eval mode: no dropout anywhere)
    t.accelerator = OneProcess()
    t.args = SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1)
    t.loss_type = opts['loss_type']
    t.beta = opts.get('beta', 0.0)
    t.epsilon_low = opts.get('epsilon', 0.2)
    eh = opts.get('epsilon_high')
    t.epsilon_high = eh if eh is not None else t.epsilon_low
    t.temperature = opts.get('temperature', 1.0)
    t.max_completion_length = MAX_COMPLETION_LENGTH
    t.importance_sampling_level = 'token'
    t.top_entropy_quantile = 1.0
    t.off_policy_mask_threshold = None
    t.use_vllm = False
    t.vllm_importance_sampling_correction = False
    t.current_gradient_accumulation_steps = 1
    t._entropy_bonus_enabled = False
    t.aux_loss_enabled = False
    t._metrics = {'train': defaultdict(list), 'eval': defaultdict(list)}
    t.model_kwarg_keys = __import__('inspect').signature(model.get_base_model().forward).parameters.keys()
    return t


def pad(seqs, value, side):
    n = max(len(s) for s in seqs)
    return torch.tensor([([value] * (n - len(s)) + s) if side == 'left' else (s + [value] * (n - len(s))) for s in seqs])


def sample_indices(n):
    return sorted({(i * 7919 + 13) % n for i in range(min(n, N_SAMPLES))})


def run_case(model, pad_id, eos_ids, prompts, completions, opts):
    G = len(completions[0])
    flat_prompts = [p for p in prompts for _ in range(G)]
    flat_completions = [c for group in completions for c in group]
    rewards = torch.tensor([r for group in REWARDS for r in group], dtype=torch.float64)
    advantages, frac_zero = advantages_as_trl(rewards, opts['scale_rewards'], G)

    prompt_ids = pad(flat_prompts, pad_id, 'left')
    prompt_mask = pad([[1] * len(p) for p in flat_prompts], 0, 'left')
    completion_ids = pad(flat_completions, pad_id, 'right')
    completion_mask = pad([[1] * len(c) for c in flat_completions], 0, 'right')
    is_truncated = torch.tensor([ids[-1] not in eos_ids for ids in flat_completions])
    if opts.get('mask_truncated_completions'):
        completion_mask = completion_mask * (~is_truncated).unsqueeze(1).int()
    num_items_in_batch = completion_mask.sum()

    trainer = trainer_for(model, opts)
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    logits_to_keep = completion_ids.size(1)
    inputs = dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids, completion_mask=completion_mask,
                  advantages=advantages, num_items_in_batch=num_items_in_batch)
    old = None
    if opts.get('old_logprobs'):
        # The sampling policy: the current one's log-probs moved by N(0, 0.3²), so that ratios
        # leave [1 − ε_low, 1 + ε_high] on both sides.
        with torch.no_grad():
            cur, _, _ = trainer._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep)
        g = torch.Generator().manual_seed(11)
        old = cur + 0.3 * torch.randn(cur.shape, generator=g, dtype=torch.float64)
        old = torch.minimum(old, torch.zeros_like(old))
        inputs['old_per_token_logps'] = old
    if trainer.beta != 0.0:
        with torch.no_grad(), use_adapter(model, adapter_name=None):
            ref, _, _ = trainer._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep)
        inputs['ref_per_token_logps'] = ref

    model.zero_grad(set_to_none=True)
    loss = GRPOTrainer._compute_loss(trainer, model, inputs)
    loss.backward()

    rollouts = {
        'prompts': prompts,
        'completions': completions,
        'rewards': REWARDS,
        'loss': {
            'type': opts['loss_type'],
            'beta': trainer.beta,
            'epsilon': trainer.epsilon_low,
            'epsilon_high': trainer.epsilon_high,
            'scale_rewards': opts['scale_rewards'],
            'temperature': trainer.temperature,
            'max_completion_length': MAX_COMPLETION_LENGTH,
            'mask_truncated_completions': bool(opts.get('mask_truncated_completions', False)),
        },
    }
    if old is not None:
        k = 0
        rollouts['old_logprobs'] = []
        for group in completions:
            rollouts['old_logprobs'].append([[float(x) for x in old[k + j, :len(c)]] for j, c in enumerate(group)])
            k += len(group)
    if opts.get('mask_truncated_completions'):
        rollouts['truncated'] = [[bool(is_truncated[i * G + j]) for j in range(G)] for i in range(len(completions))]

    grads = {}
    for n, p in sorted(model.named_parameters()):
        if 'lora_' not in n:
            continue
        key = n.replace('.default.weight', '.weight')
        gr = p.grad.detach().reshape(-1)
        idx = sample_indices(gr.numel())
        grads[key] = {'shape': list(p.shape), 'norm': float(gr.norm()), 'sum': float(gr.sum()), 'idx': idx, 'val': [float(gr[i]) for i in idx]}
    metrics = {k: v[-1] for k, v in trainer._metrics['train'].items()}
    assert math.isfinite(float(loss)), (float(loss), opts)
    return {
        'rollouts': rollouts,
        'advantages': [[float(advantages[i * G + j]) for j in range(G)] for i in range(len(completions))],
        'frac_reward_zero_std': frac_zero,
        'loss': float(loss),
        'num_items_in_batch': int(num_items_in_batch),
        'metrics': metrics,
        'grads': grads,
    }


def exact_rotary(self, x, position_ids):
    """The rotary embedding's forward with the angles and cos/sin in float64 (transformers forces float32)."""
    freqs = (self.inv_freq[None, :, None].double() @ position_ids[:, None, :].double()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


def exact_rmsnorm(self, hidden_states):
    """RMSNorm's forward in the model's dtype (transformers computes it in float32)."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def golden(gen, name):
    torch.manual_seed(0)
    # sdpa, not eager: eager attention gives a left-padded row (no key to attend to) NaN, which
    # leaks into every later row of the sequence through 0 · NaN.
    base = AutoModelForCausalLM.from_pretrained(os.path.join(gen, name), dtype=torch.float64, attn_implementation='sdpa')
    # transformers computes the rotary cos/sin and RMSNorm in float32 even in a float64 model.
    # TRL left-pads the prompts and transformers then numbers the positions from the padding:
    # exact arithmetic does not care (rotary attention sees relative positions), float32 cos/sin
    # do (~1e-6 in a log-prob). With both in float64 the padded batch computes what each sequence
    # alone computes, and the oracle is exact to float64 rounding: the engine's f64 path (packed
    # sequences, positions from 0) is held to 1e-9 (its f32 inv_freq is transformers' own).
    for suffix, fn in (('RotaryEmbedding', exact_rotary), ('RMSNorm', exact_rmsnorm)):
        mods = [m for m in base.modules() if type(m).__name__.endswith(suffix)]
        assert mods, suffix
        for m in mods:
            m.forward = MethodType(fn, m)
    model = PeftModel.from_pretrained(base, os.path.join(ADAPTERS, name), is_trainable=True)
    model.eval()
    for n, p in model.named_parameters():
        assert p.dtype == torch.float64 and p.requires_grad == ('lora_' in n), n
    vocab = model.config.vocab_size
    eos = model.config.eos_token_id
    eos = eos if isinstance(eos, int) else eos[0]
    pad_id = eos  # the padding's value never matters: masked out
    prompts, completions = rollouts_for(vocab, eos)
    out = []
    for case_name, opts in cases(name):
        r = run_case(model, pad_id, [eos, pad_id], prompts, completions, opts)
        out.append({'name': case_name, **r})
    return {
        'format': FORMAT,
        'model': name,
        'dtype': 'float64',
        'transformers': transformers.__version__,
        'torch': torch.__version__,
        'peft': peft.__version__,
        'trl': trl.__version__,
        'cases': out,
    }


def write(gen, out, models):
    os.makedirs(out, exist_ok=True)
    for name in models:
        g = golden(gen, name)
        with open(os.path.join(out, name + '.json'), 'w') as f:
            json.dump(g, f, separators=(',', ':'))
            f.write('\n')


def main(argv):
    torch.set_default_dtype(torch.float64)  # rewards and advantages in float64, like the model
    return golden_cli.run(argv, write=write, out_dir=OUT, gen=GEN, models=MODELS, label='GRPO', rel_tol=REL_TOL, skip=('transformers', 'torch', 'peft', 'trl'))


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
