"""What each of the STU preset's three changes does on its own: ITOP rate and FID of G, default vs each change vs the preset.

    OMP_NUM_THREADS=1 python bench/stu_preset.py --out bench/results/stu_preset       # 24 runs: about 8 min on one core

Five settings of G's mask callback, everything else equal (16-pixel digits, d_G = 0.1 explored with gradient growth,
d_D = 0.5 static; Adam β = (0.5, 0.999), hinge loss, EMA 0.99; three seeds):

- `default`: the library's defaults (`regrow_pruned=False`, `opt_policy='zero_new'`, `conv_only=False`);
- `regrow_pruned`, `keep`, `conv_only`: the default with one of the preset's three changes;
- `preset`: `stu_callback`, all three (the authors' code); D then masks convolutions only too, as in their code.

Two studies (`STUDIES`): a half-width DCGAN, 600 G steps with ΔT = 25, all five settings; DCGAN has no Linear layer,
so there `conv_only` masks what the default masks. And a quarter-width SNGAN pair (whose G starts with a Linear and
whose D ends with one), 200 G steps with ΔT = 20, default vs `conv_only` vs the preset. Each run evaluates the EMA
generator with the library's digits evaluator (FID of 2000 samples on the small digits classifier's features, not
Inception's). Written into `--out`: `runs.csv` (one row per run), `summary.csv`
(mean and std over seeds per setting) and `meta.json` (the command, settings, versions and wall time).
"""
import argparse, json, platform, sys, time
from pathlib import Path
import pandas as pd
import torch
from sparse_gan_nb.core import set_seed
from sparse_gan_nb.data import gan_dls
from sparse_gan_nb.models import get_models
from sparse_gan_nb.learner import GANLearner
from sparse_gan_nb.sparse import SparseMaskCallback, SparseStatsCallback, Explore, stu_callback
from sparse_gan_nb.evaluate import Evaluator

SETTINGS = {'default': dict(), 'regrow_pruned': dict(regrow_pruned=True), 'keep': dict(opt_policy='keep'),
            'conv_only': dict(conv_only=True), 'preset': None}  # None: stu_callback

def g_callback(setting:str, a) -> SparseMaskCallback:
    "G's mask callback of one setting."
    kw = SETTINGS[setting]
    if kw is None: return stu_callback(a.d_g, a.delta_t, seed=a.seed)
    return SparseMaskCallback('G', a.d_g, schedule=Explore(a.delta_t, growth='gradient', regrow_pruned=kw.get('regrow_pruned', False)),
                              conv_only=kw.get('conv_only', False), opt_policy=kw.get('opt_policy', 'zero_new'), seed=a.seed)

def run(setting:str, a, ev:Evaluator) -> dict:
    "Train one setting (the learner of `a`'s model, seed and length) and return its numbers."
    t0 = time.time()
    set_seed(a.seed)
    G, D = get_models(a.model, nz=a.nz, img_size=16, nc=1, width=a.width)
    g = g_callback(setting, a)
    cbs = [g, SparseMaskCallback('D', a.d_d, conv_only=g.conv_only, seed=a.seed), SparseStatsCallback(br_every=None)]
    learn = GANLearner(gan_dls('digits', bs=a.bs, seed=a.seed, size=16), G, D, betas=(.5, .999), ema=.99, log_every=10**9, cbs=cbs)
    learn.fit_iters(a.n_iter)
    s = learn.sparse_stats.summary()
    fid = ev.evaluate_generator(learn.G_ema, n=a.eval_n, seed=a.seed)['fid']
    return dict(setting=setting, seed=a.seed, fid=fid, itop_G=s['itop_G'], density_G=s['density_G'], stored_params_G=s['stored_params_G'],
                params_G=s['params_G'], n_regrown=sum(u['n_regrown'] for u in g.updates), updates=len(g.updates),
                masked_layers_G=len(g.sparse.names), seconds=round(time.time() - t0, 1))

STUDIES = {  # DCGAN masks only convolutions anyway, so there `conv_only` is the default; SNGAN shows what it does
    'dcgan': dict(model='dcgan', width=.5, bs=64, n_iter=600, delta_t=25, settings=list(SETTINGS)),
    'sngan': dict(model='sngan', width=.25, bs=32, n_iter=200, delta_t=20, settings=['default', 'conv_only', 'preset'])}

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='bench/results/stu_preset'); p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--studies', nargs='+', default=list(STUDIES), choices=list(STUDIES))
    p.add_argument('--d-g', type=float, default=.1); p.add_argument('--d-d', type=float, default=.5)
    p.add_argument('--nz', type=int, default=32); p.add_argument('--eval-n', type=int, default=2000)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    t0, ev, rows = time.time(), Evaluator('digits', n_samples=a.eval_n, metrics=('fid',), size=16), []
    for study in a.studies:
        cfg = STUDIES[study]
        for seed in a.seeds:
            for setting in cfg['settings']:
                r = argparse.Namespace(**vars(a), **{k: v for k, v in cfg.items() if k != 'settings'}, seed=seed)
                r.delta_t = cfg['delta_t']
                rows.append(dict(study=study, **run(setting, r, ev))); print(rows[-1], flush=True)
    df = pd.DataFrame(rows); df.to_csv(out/'runs.csv', index=False)
    agg = df.groupby(['study', 'setting'], sort=False).agg(
        seeds=('seed', 'count'), fid_mean=('fid', 'mean'), fid_std=('fid', 'std'), itop_mean=('itop_G', 'mean'), itop_std=('itop_G', 'std'),
        n_regrown_mean=('n_regrown', 'mean'), stored_params_G=('stored_params_G', 'mean'), masked_layers_G=('masked_layers_G', 'first'))
    agg.reset_index().to_csv(out/'summary.csv', index=False)
    meta = dict(command='OMP_NUM_THREADS=1 python bench/stu_preset.py ' + ' '.join(argv if argv is not None else sys.argv[1:]),
                seeds=a.seeds, d_G=a.d_g, d_D=a.d_d, nz=a.nz, eval_n=a.eval_n, studies={k: STUDIES[k] for k in a.studies},
                data='digits, 16 px', evaluator=repr(ev), wall_s=round(time.time() - t0, 1),
                torch=torch.__version__, python=platform.python_version(), threads=torch.get_num_threads())
    (out/'meta.json').write_text(json.dumps(meta, indent=1) + '\n')
    print(agg.round(4).to_string())

if __name__ == '__main__': main()
