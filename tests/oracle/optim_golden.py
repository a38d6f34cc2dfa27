"""AdamW, gradient clipping and learning-rate schedule goldens from torch and transformers.

    .venv/bin/python tests/oracle/optim_golden.py           # write tests/fixtures/golden/optim.json
    .venv/bin/python tests/oracle/optim_golden.py --check   # recompute; exit 1 on drift

Four float64 parameters (a LoRA pair of two modules: A [2, 3], B [4, 2], A [2, 5], B [3, 2]) and
torch.optim.AdamW(lr from transformers' get_cosine_schedule_with_warmup(warmup 2, total 7),
betas (0.9, 0.99), eps 1e-8, weight_decay 0.1), seven steps; before each step random gradients
(some with a global norm above 1, some below) go through torch.nn.utils.clip_grad_norm_(max 1.0).
Recorded per step: the gradients before clipping, the norm clip_grad_norm_ returns, the learning
rate, the parameters and both moments after the step. Also the multipliers of transformers'
constant/linear/cosine schedules with warmup 3 over 10 steps, at steps 0..11.

Checked by native/tests/test_train_optim.cpp.
"""
import json
import os
import sys

import torch
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'golden', 'optim.json')
SHAPES = [[2, 3], [4, 2], [2, 5], [3, 2]]
GRAD_SCALES = [3.0, 0.1, 1.5, 0.05, 0.2, 4.0, 0.3]  # global norms above and below the clip


def adamw():
    g = torch.Generator().manual_seed(7)
    params = [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64) * 0.5) for s in SHAPES]
    init = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, foreach=False)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=len(GRAD_SCALES))
    steps = []
    for scale in GRAD_SCALES:
        grads = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
        total = torch.sqrt(sum((x * x).sum() for x in grads))
        grads = [x * (scale / total) for x in grads]
        for p, x in zip(params, grads):
            p.grad = x.clone()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
        lr = opt.param_groups[0]['lr']
        opt.step()
        sched.step()
        steps.append({
            'grads': [x.reshape(-1).tolist() for x in grads],
            'norm': float(norm),
            'lr': lr,
            'params': [p.detach().reshape(-1).tolist() for p in params],
            'exp_avg': [opt.state[p]['exp_avg'].reshape(-1).tolist() for p in params],
            'exp_avg_sq': [opt.state[p]['exp_avg_sq'].reshape(-1).tolist() for p in params],
        })
    return {'shapes': SHAPES, 'lr': 0.05, 'betas': [0.9, 0.99], 'eps': 1e-8, 'weight_decay': 0.1, 'max_norm': 1.0,
            'warmup': 2, 'total': len(GRAD_SCALES), 'init': [p.reshape(-1).tolist() for p in init], 'steps': steps}


def schedules():
    out = {}
    for name, make in [('constant', lambda o: get_constant_schedule_with_warmup(o, 3)),
                       ('linear', lambda o: get_linear_schedule_with_warmup(o, 3, 10)),
                       ('cosine', lambda o: get_cosine_schedule_with_warmup(o, 3, 10))]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        s = make(opt)
        lrs = []
        for _ in range(12):
            lrs.append(opt.param_groups[0]['lr'])
            opt.step()
            s.step()
        out[name] = lrs
    return {'warmup': 3, 'total': 10, 'multipliers': out}


def golden():
    return {'format': 1, 'torch': torch.__version__, 'adamw': adamw(), 'schedules': schedules()}


def main(argv):
    g = golden()
    if '--check' in argv:
        with open(OUT) as f:
            old = json.load(f)
        old.pop('torch', None)
        g.pop('torch', None)
        a, b = json.dumps(old, sort_keys=True), json.dumps(g, sort_keys=True)
        print('optimizer golden matches' if a == b else 'optimizer golden drifted')
        return 0 if a == b else 1
    with open(OUT, 'w') as f:
        json.dump(g, f, separators=(',', ':'))
        f.write('\n')
    print(f'wrote {OUT}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
