"""A small-scale replication of DGL-GAN's claims, on 16-pixel stacked digits, sized for a CPU.

A dense DCGAN teacher is trained by the dense baseline notebook; students at 1/2 and 1/4 of its width are trained by
the dense baseline (vanilla) and by the DGL notebook (the teacher term, in two stages or switched on from the start),
each with several seeds; boost mode trains full-width students with the term, next to full-width vanilla runs. Every
run is a papermill run of an experiment notebook in its own folder under --out; a finished run (metrics.json and
eval.json) is not run again, so the script resumes where it stopped. Each generator (its EMA copy) is evaluated with
the library's Evaluator: FID, IS, precision/recall on the digits classifier's features and modes (of 1000) of the
stacked digits, plus its generator loss under the frozen teacher D. The script writes runs.csv (one row per run),
summary.csv, summary.md and curves.png under --out, prints the table and its own wall time.

    OMP_NUM_THREADS=1 python bench/replicate_dgl.py --out runs/dgl_replication            # the full replication
    OMP_NUM_THREADS=1 python bench/replicate_dgl.py --out /tmp/dgl_quick --quick          # a smoke run, ~2 minutes
"""
import argparse, json, os, platform, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
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
from sparse_gan_nb.experiment import run_notebook, run_dir_in, markdown_table
from sparse_gan_nb.losses import get_loss

METHODS = {'teacher': 'teacher (dense)', 'vanilla': 'vanilla student', 'dgl2': 'DGL, two stages',
           'dgl1': 'DGL, one stage', 'boost': 'boost (DGL at full width)'}
RUN_DIRS = {'teacher': 'teacher', 'vanilla': 'vanilla-w{width:g}-s{seed}', 'boost': 'boost-s{seed}',  # each run's folder under --out
            'dgl1': 'dgl1-w{width:g}-s{seed}', 'dgl2': 'dgl2-w{width:g}-s{seed}'}

def when(s:str) -> int|float:
    "A point in the run: a fraction below 1 (a float), or a G-step count when 1 or more (an int)."
    v = float(s)
    if v < 1: return v
    if v != int(v): raise argparse.ArgumentTypeError(f'{s!r} is neither a fraction of the run below 1 nor a whole number of G steps')
    return int(v)

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='runs/dgl_replication', help='folder for the run folders and the tables')
    p.add_argument('--iters', type=int, default=1200, help='G steps of every student run')
    p.add_argument('--teacher-iters', type=int, default=None, help='G steps of the teacher (default: --iters)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2], help='student seeds')
    p.add_argument('--teacher-seed', type=int, default=TEACHER_SEED_OFFSET)
    p.add_argument('--widths', type=float, nargs='+', default=[.5, .25], help='student width multipliers')
    p.add_argument('--lam', type=float, default=.1)
    p.add_argument('--stage1', type=when, default=.5, help='stage-2 boundary of the two-stage runs: a fraction of the run below 1, or G steps when 1 or more')
    p.add_argument('--workers', type=int, default=2, help='runs in parallel')
    p.add_argument('--eval-samples', type=int, default=2000)
    p.add_argument('--no-boost', action='store_true', help='skip the full-width runs (vanilla and boost)')
    p.add_argument('--quick', action='store_true', help='a smoke run: 20 steps, one seed, 300 samples')
    a = p.parse_args(argv)
    if a.quick: a.iters, a.seeds, a.eval_samples = 20, [0], 300
    a.teacher_iters = a.teacher_iters or a.iters
    return a

def jobs(a):
    "(name, method, width, seed, notebook, params), in the order they start: the teacher, vanilla runs, then the DGL runs, longest first."
    hp = dict(dataset='stacked_digits', img_size=16, bs=64, loss='hinge', lr_g=2e-4, lr_d=2e-4, beta1=.5, beta2=.999, ema=.99,
              log_every=max(1, a.iters // 24), eval_n=None)  # every run is evaluated here, the same way
    base = lambda w, seed, n: dict(hp, model='dcgan', nz=32, width=w, d_width=w, n_iter=n, seed=seed, sample_every=n, ckpt_every=n)
    dgl = lambda w, seed, start: dict(hp, width_mult=w, lam=a.lam, stage1=start, n_iter=a.iters, seed=seed,
                                      sample_every=a.iters, ckpt_every=a.iters)
    widths = ([] if a.no_boost else [1.]) + list(a.widths)
    out = [('teacher', 1., a.teacher_seed, 'dense_baseline', base(1., a.teacher_seed, a.teacher_iters))]
    out += [('vanilla', w, s, 'dense_baseline', base(w, s, a.iters)) for w in widths for s in a.seeds]
    if not a.no_boost: out += [('boost', 1., s, 'dgl_gan', dgl(1., s, a.stage1)) for s in a.seeds]
    for w in a.widths:
        out += [('dgl1', w, s, 'dgl_gan', dgl(w, s, 0.)) for s in a.seeds]
        out += [('dgl2', w, s, 'dgl_gan', dgl(w, s, a.stage1)) for s in a.seeds]
    return [(RUN_DIRS[m].format(width=w, seed=s), m, w, s, nb, prm) for m, w, s, nb, prm in out]

def run_folder(out:Path, method:str, width:float, seed:int) -> Path:
    "The run folder of a run under `out`, from its name parts."
    return run_dir_in(out, RUN_DIRS[method], width=width, seed=seed)

class Replication:
    def __init__(self, a):
        self.a, self.out = a, Path(a.out).absolute()
        self.teacher_ck, self.teacher_ready, self.lock = run_folder(self.out, 'teacher', 1., a.teacher_seed)/CKPT_NAME, threading.Event(), threading.Lock()
        self.dls = gan_dls('stacked_digits', bs=64, seed=0, size=16)
        self.ev = Evaluator('stacked_digits', size=16, n_samples=a.eval_samples, metrics=('fid', 'is', 'pr', 'modes'))
        self.failed = False

    def evaluate(self, run_dir:Path) -> dict:
        "Metrics of the run's EMA generator, and its generator loss under the frozen teacher D (in batches of 64)."
        f = run_dir/'eval.json'
        if f.exists(): return json.loads(f.read_text())
        G = load_teacher(run_dir/CKPT_NAME, self.dls).G
        m = self.ev.evaluate_generator(G)
        T = load_teacher(self.teacher_ck, self.dls).D
        with torch.no_grad():
            x = sample_generator(G, 1024, seed=1)
            dt = float(np.mean([get_loss('hinge').g_loss(T(x[i:i+64])).item() for i in range(0, len(x), 64)]))
        keep = {k: m[k] for k in ('fid', 'is_mean', 'precision', 'recall', 'modes', 'mode_kl', 'n_samples')}
        keep['loss_under_teacher'] = dt
        f.write_text(json.dumps(keep))
        return keep

    def run(self, job):
        name, method, w, seed, nb, params = job
        d = run_folder(self.out, method, w, seed)
        try:
            if nb == 'dgl_gan':
                self.teacher_ready.wait()
                if self.failed: return None
                params = dict(params, teacher_ckpt=str(self.teacher_ck))
            t0 = time.time()
            if not (d/'metrics.json').exists(): run_notebook(nb, d, params)  # an unfinished run with a checkpoint is continued
            if method == 'teacher': self.teacher_ready.set()
            self.teacher_ready.wait()  # the evaluation scores every student under the teacher D
            if self.failed: return None
            ev = self.evaluate(d)
            m = json.loads((d/'metrics.json').read_text())['metrics']
            row = dict(run=name, method=method, width=w, seed=seed, train_s=m['train_time_s'], **ev, wall_s=round(time.time() - t0, 1))
            with self.lock: print(f"{name:18s} FID {ev['fid']:7.2f}  IS {ev['is_mean']:6.2f}  modes {ev['modes']:4d}  "
                                  f"train {m['train_time_s']:6.1f}s  ({time.time() - self.t0:6.0f}s since start)", flush=True)
            return row
        except BaseException:
            if method == 'teacher': self.failed = True; self.teacher_ready.set()
            raise

    def __call__(self):
        self.t0 = time.time()
        js = jobs(self.a)
        with ThreadPoolExecutor(self.a.workers) as pool: rows = [r for r in pool.map(self.run, js) if r is not None]
        return pd.DataFrame(rows)

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
    a = parse(argv)
    torch.set_num_threads(1)
    out, cwd = Path(a.out).absolute(), os.getcwd()  # absolute: papermill changes the process's working folder while a run executes
    out.mkdir(parents=True, exist_ok=True)
    rep = Replication(a)
    df = rep().sort_values(['method', 'width', 'seed'])
    os.chdir(cwd)
    df.to_csv(out/'runs.csv', index=False)
    sizes = width_table(load_teacher(rep.teacher_ck, rep.dls), (1.,) + tuple(a.widths))
    summary = summarise(df, sizes)
    summary.to_csv(out/'summary.csv', index=False)
    if a.widths: curves(df, out, a.widths[0])
    wall = time.time() - t0
    cmd = 'OMP_NUM_THREADS=1 python bench/replicate_dgl.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    stage2 = f'after {a.stage1} G steps' if isinstance(a.stage1, int) else f'at {a.stage1:g} of the run'
    md = '\n'.join([f'Command: `{cmd}`', '',
                    f'Stacked digits at 16 px; DCGAN, nz 32, hinge loss, Adam 2e-4 (0.5, 0.999), batch 64, EMA 0.99. '
                    f'Teacher: {a.teacher_iters} G steps, seed {a.teacher_seed}. Students: {a.iters} G steps, seeds {a.seeds}; '
                    f'DGL λ = {a.lam}, two stages switch the term on {stage2}. Metrics of the EMA generator on '
                    f'{a.eval_samples} samples against the {rep.ev.n_ref} training images (features of the {rep.ev.extractor.name} extractor; modes of 1000); '
                    f'"loss under D_T" is the hinge generator loss of 1024 samples under the frozen teacher D. Mean ± std over seeds.', '',
                    markdown_table(summary), '', *claims(df), '',
                    f'Wall time {wall / 60:.1f} min with {a.workers} runs in parallel on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), '
                    f'torch {torch.__version__}.'])
    (out/'summary.md').write_text(md + '\n')
    print(md)
    print(f'\nwall time: {wall:.0f} s')

if __name__ == '__main__': main()
