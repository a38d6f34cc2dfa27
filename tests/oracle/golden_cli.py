"""The command line the golden scripts share: write the goldens, or (--check) regenerate them in a
temporary folder and list every value that drifted from the committed ones."""
import json
import os
import sys
import tempfile


def drift(a, b, path, out, rel_tol, skip=()):
    """Appends to `out` every difference between the committed golden `a` and the fresh one `b`;
    floats compare within rel_tol, keys in `skip` (library versions) are ignored."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in skip:
                continue
            if k not in a or k not in b:
                out.append(f'{path}.{k}: only in the {"committed" if k in a else "fresh"} golden')
            else:
                drift(a[k], b[k], f'{path}.{k}', out, rel_tol, skip)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f'{path}: length {len(a)} committed, {len(b)} now')
        for i, (x, y) in enumerate(zip(a, b)):
            drift(x, y, f'{path}[{i}]', out, rel_tol, skip)
    elif isinstance(a, float) or isinstance(b, float):
        if abs(a - b) > rel_tol * max(1.0, abs(a), abs(b)):
            out.append(f'{path}: committed {a!r}, now {b!r}')
    elif a != b:
        out.append(f'{path}: committed {a!r}, now {b!r}')


def run(argv, *, write, out_dir, gen, models, label, rel_tol, skip=(), where=None):
    """`write(gen, folder, models)` makes `<model>.json` per model in `folder`.
    Arguments: [--check] [--gen DIR] [--models a,b]."""
    check = False
    args = iter(argv)
    for a in args:
        if a == '--check':
            check = True
        elif a == '--gen':
            gen = os.path.abspath(next(args))
        elif a == '--models':
            models = next(args).split(',')
        else:
            print(f'unknown argument {a}', file=sys.stderr)
            return 2
    where = where or (lambda g, m: os.path.join(g, m))
    missing = [m for m in models if not os.path.isdir(where(gen, m))]
    if missing:
        print(f'missing generated models {missing} in {gen}: run node --import tsx tests/fixtures/make-tiny-models.ts', file=sys.stderr)
        return 2
    if not check:
        write(gen, out_dir, models)
        print(f'wrote {len(models)} {label} goldens to {out_dir}')
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        write(gen, tmp, models)
        problems = []
        for name in models:
            with open(os.path.join(out_dir, name + '.json')) as f:
                a = json.load(f)
            with open(os.path.join(tmp, name + '.json')) as f:
                b = json.load(f)
            drift(a, b, name, problems, rel_tol, skip)
        for p in problems[:50]:
            print(p)
        print(f'{len(problems)} differences' if problems else f'{label} goldens match')
        return 1 if problems else 0
