"""Evaluation, tables and claims of the DGL-GAN replication, on 16-pixel stacked digits, from its run folders.

The runs are two grid specs run by `sgn grid`: `bench/grids/dgl_teacher.toml` (a dense DCGAN teacher, 2400 G steps)
and then `bench/grids/dgl.toml` (24 students of 1200 G steps: widths 1/2 and 1/4 trained alone by the dense
baseline, with the teacher term in two stages and from the start by the DGL notebook; boost mode at full width next
to full-width vanilla runs; seeds 0, 1, 2). A finished run is skipped and an unfinished one continued.

    OMP_NUM_THREADS=1 sgn grid bench/grids/dgl_teacher.toml
    OMP_NUM_THREADS=1 sgn grid bench/grids/dgl.toml --jobs 2
    OMP_NUM_THREADS=1 python bench/replicate_dgl.py runs/dgl_replication

This script evaluates each run's EMA generator the same way, with the library's Evaluator (FID, IS,
precision/recall on the digits classifier's features, modes of 1000; saved as eval.json in the run folder, so it is
done once), plus its generator loss under the frozen teacher D, and writes runs.csv (one row per run), summary.csv,
summary.md and curves.png in the grid's folder.
"""
import argparse, json, os, platform, re, sys, time
from pathlib import Path
os.environ.setdefault('OMP_NUM_THREADS', '1')
import numpy as np, pandas as pd, torch
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from sparse_gan_nb.data import gan_dls
from sparse_gan_nb.core import CKPT_NAME
from sparse_gan_nb.distill import load_teacher, width_table, TEACHER_SEED_OFFSET
from sparse_gan_nb.evaluate import Evaluator
from sparse_gan_nb.learner import sample_generator
from sparse_gan_nb.experiment import collect_runs, markdown_table
from sparse_gan_nb.losses import get_loss

METHODS = {'teacher': 'teacher (dense)', 'vanilla': 'vanilla student', 'dgl2': 'DGL, two stages',
           'dgl1': 'DGL, one stage', 'boost': 'boost (DGL at full width)'}
RUN_DIRS = {'teacher': 'teacher', 'vanilla': 'vanilla-w{width:g}-s{seed}', 'boost': 'boost-s{seed}',  # each run's folder under --out
            'dgl1': 'dgl1-w{width:g}-s{seed}', 'dgl2': 'dgl2-w{width:g}-s{seed}'}

RUN_NAME = re.compile(r'^(teacher|vanilla|boost|dgl1|dgl2)(?:-w([0-9.]+))?(?:-s([0-9]+))?$')  # the folder names of bench/grids/dgl*.toml

def run_folder(out:Path, method:str, width:float, seed:int) -> Path:
    "The run folder of a run under `out`, from its name parts (the name patterns of bench/grids/dgl*.toml)."
    return out/('teacher' if method == 'teacher' else f'boost-s{seed}' if method == 'boost' else f'{method}-w{width:g}-s{seed}')

def find_runs(out:Path) -> pd.DataFrame:
    "(run, method, width, seed, metrics) of every finished run of the replication under `out`."
    df, bad = collect_runs(out)
    for run, why in bad: print(f'skipping {run}: {why}', file=sys.stderr)
    rows = []
    for _, r in df.iterrows():
        m = RUN_NAME.match(r['run'])
        if m: rows.append(dict(run=r['run'], method=m[1], width=float(m[2] or 1.), seed=int(r['params.seed']), n_iter=int(r['params.n_iter']),
                               train_s=r['metrics.train_time_s'], lam=r.get('params.lam'), stage1=r.get('params.stage1')))
    return pd.DataFrame(rows)

def evaluate(run_dir:Path, ev:Evaluator, dls, teacher_ck:Path) -> dict:
    "Metrics of the run's EMA generator, and its generator loss under the frozen teacher D (in batches of 64); kept in eval.json."
    f = run_dir/'eval.json'
    if f.exists():
        e = json.loads(f.read_text())
        if e.get('n_samples') == ev.n_samples: return e
    G = load_teacher(run_dir/CKPT_NAME, dls).G
    m = ev.evaluate_generator(G)
    T = load_teacher(teacher_ck, dls).D
    with torch.no_grad():
        x = sample_generator(G, 1024, seed=1)
        dt = float(np.mean([get_loss('hinge').g_loss(T(x[i:i+64])).item() for i in range(0, len(x), 64)]))
    keep = {k: m[k] for k in ('fid', 'is_mean', 'precision', 'recall', 'modes', 'mode_kl', 'n_samples')} | dict(loss_under_teacher=dt)
    f.write_text(json.dumps(keep))
    return keep

def pm(x:pd.Series, fmt:str) -> str:
    return format(x.mean(), fmt) if len(x) == 1 else f'{x.mean():{fmt}} ± {x.std():{fmt}}'

def summarise(df:pd.DataFrame, sizes:pd.DataFrame) -> pd.DataFrame:
    rows = []
    order = [('teacher', 1.)] + [(m, w) for w in sorted(df.width.unique(), reverse=True) for m in ('vanilla', 'boost', 'dgl2', 'dgl1')]
    for m, w in order:
        g = df[(df.method == m) & (df.width == w)]
        if g.empty: continue
        rows.append({'method': METHODS[m], 'width': f'{w:g}', 'seeds': len(g),
                     'G params': f"{sizes.loc[w, 'G_params']:,} ({sizes.loc[w, 'G_params_ratio']:.2f}x)",
                     'G MACs': f"{sizes.loc[w, 'G_macs'] / 1e6:.2f}M ({sizes.loc[w, 'G_macs_ratio']:.2f}x)",
                     'FID': pm(g.fid, '.2f'), 'IS': pm(g.is_mean, '.1f'), 'precision': pm(g.precision, '.3f'),
                     'recall': pm(g.recall, '.3f'), 'modes': pm(g.modes, '.0f'), 'loss under D_T': pm(g.loss_under_teacher, '.2f'),
                     'train s': pm(g.train_s, '.0f')})
    return pd.DataFrame(rows)

def paired(df, a, b, w):
    "Seeds where method a has a lower FID than method b at width w (same seed = same stage 1 for DGL vs vanilla)."
    x = df[(df.method == a) & (df.width == w)].set_index('seed').fid
    y = df[(df.method == b) & (df.width == w)].set_index('seed').fid
    s = x.index.intersection(y.index)
    return f'{int((x[s] < y[s]).sum())}/{len(s)} seeds, mean FID change {(x[s] - y[s]).mean():+.2f}'

def claims(df) -> list:
    out = []
    for w in sorted(set(df[df.method == 'dgl2'].width), reverse=True):
        out.append(f'- width {w:g}: DGL (two stages) beats the vanilla student on FID in {paired(df, "dgl2", "vanilla", w)}.')
        out.append(f'- width {w:g}: two stages beat one stage on FID in {paired(df, "dgl2", "dgl1", w)}; FID std over seeds '
                   f'{df[(df.method == "dgl2") & (df.width == w)].fid.std():.2f} (two stages) vs {df[(df.method == "dgl1") & (df.width == w)].fid.std():.2f} (one stage).')
    if (df.method == 'boost').any():
        t, b = df[df.method == 'teacher'].fid.iloc[0], df[df.method == 'boost'].fid
        out.append(f'- boost: mean FID {b.mean():.2f} against the teacher\'s {t:.2f} ({int((b < t).sum())}/{len(b)} seeds better); '
                   f'against full-width vanilla runs: {paired(df, "boost", "vanilla", 1.)}.')
    return out

def curves(df, out:Path, w:float):
    fig, axs = plt.subplots(1, 2, figsize=(8, 3))
    for m, c in (('vanilla', 'grey'), ('dgl1', 'tab:red'), ('dgl2', 'tab:blue')):
        for i, r in enumerate(df[(df.method == m) & (df.width == w)].itertuples()):
            h = pd.read_csv(run_folder(out, m, w, r.seed)/'history.csv')
            axs[0].plot(h.iter, h.loss_g, color=c, alpha=.6, lw=1, label=METHODS[m] if i == 0 else None)
            if 'loss_teacher' in h: axs[1].plot(h.iter, h.loss_teacher, color=c, alpha=.6, lw=1, label=METHODS[m] if i == 0 else None)
    axs[0].set(xlabel='G step', title=f'student $L_G$, width {w:g}'); axs[1].set(xlabel='G step', title=r'adv$_G$ under the teacher $D_T$', yscale='log')
    axs[0].legend(fontsize=7); axs[1].legend(fontsize=7); plt.tight_layout(); fig.savefig(out/'curves.png', dpi=80); plt.close(fig)

def main(argv=None):
    t0 = time.time()
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out', help="the grids' folder (runs/dgl_replication)")
    p.add_argument('--eval-samples', type=int, default=2000)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out).absolute()
    runs = find_runs(out)
    if runs.empty or not (runs.method == 'teacher').any():
        sys.exit(f'no finished teacher and students in {out}: run bench/grids/dgl_teacher.toml and bench/grids/dgl.toml first')
    dls = gan_dls('stacked_digits', bs=64, seed=0, size=16)
    ev = Evaluator('stacked_digits', size=16, n_samples=a.eval_samples, metrics=('fid', 'is', 'pr', 'modes'))
    teacher_ck = out/'teacher'/CKPT_NAME
    df = pd.DataFrame([r | evaluate(out/r['run'], ev, dls, teacher_ck) for r in runs.to_dict('records')]).sort_values(['method', 'width', 'seed'])
    df.to_csv(out/'runs.csv', index=False)
    widths = sorted(set(df[df.method == 'dgl2'].width), reverse=True)
    sizes = width_table(load_teacher(teacher_ck, dls), (1.,) + tuple(widths))
    summary = summarise(df, sizes)
    summary.to_csv(out/'summary.csv', index=False)
    if widths: curves(df, out, widths[0])
    t, st = df[df.method == 'teacher'].iloc[0], df[df.method != 'teacher']
    dgl2 = df[df.method == 'dgl2']
    stage1 = dgl2.stage1.iloc[0] if len(dgl2) else None
    stage2 = '' if stage1 is None else (f'after {int(stage1)} G steps' if float(stage1) >= 1 else f'at {float(stage1):g} of the run')
    md = '\n'.join(['Commands: `sgn grid bench/grids/dgl_teacher.toml`, `sgn grid bench/grids/dgl.toml --jobs 2`, then '
                    f'`python bench/replicate_dgl.py {a.out}`', '',
                    f'Stacked digits at 16 px; DCGAN, nz 32, hinge loss, Adam 2e-4 (0.5, 0.999), batch 64, EMA 0.99. '
                    f'Teacher: {t.n_iter} G steps, seed {t.seed}. Students: {sorted(set(st.n_iter))} G steps, seeds {sorted(set(st.seed))}; '
                    f'DGL λ = {dgl2.lam.iloc[0] if len(dgl2) else "–"}, two stages switch the term on {stage2}. Metrics of the EMA generator on '
                    f'{a.eval_samples} samples against the {ev.n_ref} training images (features of the {ev.extractor.name} extractor; modes of 1000); '
                    f'"loss under D_T" is the hinge generator loss of 1024 samples under the frozen teacher D. Mean ± std over seeds.', '',
                    markdown_table(summary), '', *claims(df), '',
                    f'Evaluation took {time.time() - t0:.0f} s on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch {torch.__version__}.'])
    (out/'summary.md').write_text(md + '\n')
    print(md)

if __name__ == '__main__': main()
