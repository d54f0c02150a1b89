"""A small-scale replication of STU-GAN's claims on stacked digits: dense, static, SET, STU and GMP at d_G in
{0.05, 0.1, 0.2} with d_D = 0.5, three seeds each, plus IMP (lottery tickets) at d_G = 0.1.

    OMP_NUM_THREADS=1 python bench/replicate_stu.py --pilot            # a few minutes: one seed, d_G = 0.1, 80 steps
    OMP_NUM_THREADS=1 python bench/replicate_stu.py --jobs 2           # the full grid: 25 min on 2 cores at 1500 G steps
    OMP_NUM_THREADS=1 python bench/replicate_stu.py --jobs 2 --n-iter 4000 --eval-every 250 --runs 'dense/seed0' '*/dG0.1/seed0' \
        --out runs/stu_curves                                          # FID over training of one seed

Every run is one execution of the experiment notebook `nbs/experiments/stu_gan.ipynb` into its own folder under
`--out` (default runs/stu_replication, or runs/stu_replication_pilot); finished runs (with a metrics.json) are
skipped, so an interrupted replication continues where it stopped. At the end it writes, in `--out`:

- `runs.csv`: one row per run (parameters and metrics);
- `table.csv` and `table.md`: mean ± std over seeds of FID, IS, modes (of 1000) and training FLOPs relative to
  one dense run, per method and density;
- `claims.md`: the three claims checked against the means, with what holds and what does not;
- `itop.csv`: the generator's ITOP rate over training, per static, SET and STU run (from each `history.csv`);
- `fid_curves.csv`, with `--eval-every`: FID over training, per run;
- for the pilot, an estimate of the full grid's time on this machine.
"""
import argparse, fnmatch, json, math, os, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT/'nbs'/'experiments'/'stu_gan.ipynb'
METHODS = dict(dense=dict(method='dense'), static=dict(method='sparse', explore='none'),
               SET=dict(method='sparse', growth='random'), STU=dict(method='sparse', growth='gradient'),
               GMP=dict(method='gmp'), IMP=dict(method='imp'))
COMMON = dict(dataset='stacked_digits', img_size=16, model='dcgan', width=0.5, d_width=0.5, nz=32, loss='hinge', d_D=0.5,
              distribution='erk', opt_policy='keep', bs=64, lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999, n_critic=1, ema=0.99,
              br_every=10, eval_metrics='fid,is,modes', device='cpu')
RUN_DIRS = dict(dense='{method}/seed{seed}', other='{method}/dG{d_G}/seed{seed}')  # each run's folder under --out
FULL = dict(densities=(0.05, 0.1, 0.2), seeds=(0, 1, 2), n_iter=1500, delta_t=100, imp_density=0.1, imp_rounds=3, eval_n=2000, log_every=100)
PILOT = dict(densities=(0.1,), seeds=(0,), n_iter=80, delta_t=20, imp_density=0.1, imp_rounds=2, eval_n=500, log_every=20)

def run_folder(out:Path, label:str, params:dict) -> Path:
    "The run folder of a run of method `label` (a key of METHODS) under `out`, from its name parts."
    from sparse_gan_nb.experiment import run_dir_in
    return run_dir_in(out, RUN_DIRS['dense' if label == 'dense' else 'other'], method=label, d_G=params['d_G'], seed=params['seed'])

def grid(cfg:dict, out:Path) -> list:
    "(run name, run folder, parameters) of every run of the replication; the name is the folder relative to `out`."
    runs = [('dense', dict(METHODS['dense'], d_G=1.0, seed=s)) for s in cfg['seeds']]
    for m in ('static', 'SET', 'STU', 'GMP'):
        runs += [(m, dict(METHODS[m], d_G=d, seed=s)) for d in cfg['densities'] for s in cfg['seeds']]
    runs += [('IMP', dict(METHODS['IMP'], d_G=cfg['imp_density'], imp_rounds=cfg['imp_rounds'], seed=s)) for s in cfg['seeds']]
    shared = dict(COMMON, n_iter=cfg['n_iter'], delta_t=cfg['delta_t'], eval_n=cfg['eval_n'], log_every=cfg['log_every'],
                  sample_every=cfg['n_iter'], ckpt_every=cfg['n_iter'])
    dirs = [run_folder(out, m, p) for m, p in runs]
    return [(d.relative_to(out).as_posix(), d, dict(shared, **p)) for d, (m, p) in zip(dirs, runs)]

def trainings(params:dict) -> int: return params.get('imp_rounds', 0) + 1 if params['method'] == 'imp' else 1

def run_one(run_dir:str, name:str, params:dict) -> tuple:
    "Run one notebook into `run_dir` (in a worker process; an unfinished run there is continued) and return (name, seconds, error or None)."
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    from sparse_gan_nb.experiment import run_notebook
    t0 = time.time()
    try: run_notebook(NB, run_dir, params); return name, time.time() - t0, None
    except Exception as e: return name, time.time() - t0, f'{type(e).__name__}: {e}'

def pm(x): return '–' if x.isna().all() else (f'{x.mean():.3g}' if len(x.dropna()) < 2 else f'{x.mean():.3g} ± {x.std():.2g}')

def summarise(out:Path) -> pd.DataFrame:
    "Per-run table, the mean ± std table and the claims, written into `out`."
    from sparse_gan_nb.experiment import collect_runs, markdown_table
    df, unreadable = collect_runs(out)
    for run, why in unreadable: print(f'skipping {run}: its metrics.json cannot be read ({why})', file=sys.stderr)
    df['method'] = df['run'].str.split('/').str[0]
    df.to_csv(out/'runs.csv', index=False)
    cols = {'metrics.fid': 'FID ↓', 'metrics.is_mean': 'IS ↑', 'metrics.modes': 'modes ↑', 'metrics.train_flops_vs_dense': 'train FLOPs',
            'metrics.itop_G': 'ITOP (G)', 'metrics.train_time_s': 'time (s)'}
    rows = []
    for (m, d), g in df.groupby(['method', 'params.d_G'], sort=False):
        rows.append({'method': m, 'd_G': d, 'd_D': 1.0 if m == 'dense' else g['params.d_D'].iloc[0], 'seeds': len(g),
                     **{v: pm(g[k]) for k, v in cols.items() if k in g}})
    tab = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METHODS)}
    tab = tab.assign(_k=[(m != 'dense', d, order[m]) for m, d in zip(tab['method'], tab['d_G'])]).sort_values('_k').drop(columns='_k').reset_index(drop=True)
    tab.to_csv(out/'table.csv', index=False)
    (out/'table.md').write_text(markdown_table(tab) + '\n')
    (out/'claims.md').write_text(claims(df) + '\n')
    hist = {run: pd.read_csv(out/run/'history.csv') for run in df['run']}
    def over_training(col, keep):  # `col` of each kept run's history.csv, on the rows that logged it
        return [hist[r['run']].dropna(subset=[col])[['iter', col]].assign(method=r['method'], d_G=r['params.d_G'], seed=r['params.seed'])
                for _, r in df.iterrows() if keep(r, hist[r['run']])]
    curves = over_training('G_itop', lambda r, h: r['method'] in ('static', 'SET', 'STU'))
    if curves: pd.concat(curves).to_csv(out/'itop.csv', index=False)
    fids = over_training('fid', lambda r, h: 'fid' in h and h['fid'].notna().sum() > 1)
    if fids: pd.concat(fids).to_csv(out/'fid_curves.csv', index=False)
    return tab

def claims(df:pd.DataFrame) -> str:
    "Check the three claims on the seed means of FID; report every comparison, not only those that hold."
    mean = df.groupby(['method', 'params.d_G'])['metrics.fid'].agg(['mean', 'std', 'count'])
    cost = df.groupby(['method', 'params.d_G'])['metrics.train_flops_vs_dense'].mean()
    get = lambda m, d: mean.loc[(m, d)] if (m, d) in mean.index else None
    dense = mean.loc['dense'].iloc[0] if 'dense' in mean.index.get_level_values(0) else None
    ds = sorted(d for m, d in mean.index if m == 'STU')
    lines = ['# Claims checked on mean FID over seeds (lower is better)', '']
    lines.append('1. STU is better than static at the same density:')
    for d in ds:
        s, t = get('STU', d), get('static', d)
        if t is not None: lines.append(f"   - d_G={d}: STU {s['mean']:.3g} ± {s['std']:.2g} vs static {t['mean']:.3g} ± {t['std']:.2g}: "
                                       f"{'holds' if s['mean'] < t['mean'] else 'does NOT hold'}"
                                       f"{' (within one std)' if abs(s['mean'] - t['mean']) < max(s['std'], t['std']) else ''}")
    if dense is not None and len(ds) > 1:
        gaps = [get('STU', d)['mean'] - dense['mean'] for d in ds]
        ok = all(a >= b for a, b in zip(gaps, gaps[1:]))
        lines += ['', f"2. STU gets closer to dense as density rises: gaps to dense ({dense['mean']:.3g}) at d_G={ds}: "
                      f"{[round(float(g), 3) for g in gaps]}: {'holds' if ok else 'does NOT hold (not monotone)'}"]
    elif dense is not None:
        lines += ['', f"2. STU vs dense ({dense['mean']:.3g}): one density only, the trend cannot be checked"]
    imp = [(d, get('IMP', d)) for d in ds if get('IMP', d) is not None]
    for d, i in imp:
        s = get('STU', d)
        lines += ['', f"3. STU is no worse than IMP at a fraction of its cost (d_G={d}): STU {s['mean']:.3g} ± {s['std']:.2g} at "
                      f"{cost.loc[('STU', d)]:.3g}× dense FLOPs vs IMP {i['mean']:.3g} ± {i['std']:.2g} at {cost.loc[('IMP', d)]:.3g}×: "
                      f"{'holds' if s['mean'] <= i['mean'] else 'does NOT hold'}"
                      f"{' (within one std)' if abs(s['mean'] - i['mean']) < max(s['std'], i['std']) else ''}"]
    return '\n'.join(lines).replace('nan', 'n/a')

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--pilot', action='store_true', help='a tiny version: one seed, one density, 80 steps')
    p.add_argument('--out', default=None, help='the folder of the run folders')
    p.add_argument('--jobs', type=int, default=1, help='runs in parallel (each uses one thread)')
    p.add_argument('--n-iter', type=int, default=None, help='override the G steps per run')
    p.add_argument('--eval-every', type=int, default=None, help='G steps between evaluations (FID over training, and fid_best); default (or 0): only the final one')
    p.add_argument('--runs', nargs='+', default=None, help="only the runs whose names match one of these patterns, e.g. 'dense/seed0' '*/dG0.1/seed0'")
    p.add_argument('--list', action='store_true', help='only list the runs')
    a = p.parse_args(argv)
    cfg = dict(PILOT if a.pilot else FULL)
    if a.n_iter: cfg['n_iter'] = a.n_iter
    out = Path(a.out or ROOT/'runs'/('stu_replication_pilot' if a.pilot else 'stu_replication'))
    runs = grid(cfg, out)
    if a.runs: runs = [(n, d, prm) for n, d, prm in runs if any(fnmatch.fnmatch(n, pat) for pat in a.runs)]
    if a.eval_every: runs = [(n, d, dict(prm, eval_every=a.eval_every)) for n, d, prm in runs]
    if a.list:
        for n, d, prm in runs: print(n, json.dumps({k: prm[k] for k in ('method', 'd_G', 'seed')}))
        return
    todo = [(n, d, prm) for n, d, prm in runs if not (d/'metrics.json').exists()]
    # seed-major, costliest first: a stopped replication has whole seeds of every method, and two jobs finish together
    todo.sort(key=lambda r: (r[2]['seed'], -trainings(r[2])))
    print(f'{len(runs)} runs ({sum(trainings(p_) for _, _, p_ in runs)} trainings of {cfg["n_iter"]} G steps), {len(todo)} to do, into {out}', flush=True)
    t0, times = time.time(), {}
    with ProcessPoolExecutor(max_workers=a.jobs) as ex:
        futs = [ex.submit(run_one, str(d), n, prm) for n, d, prm in todo]
        for f in as_completed(futs):
            name, secs, err = f.result(); times[name] = secs
            print(f'{name:28s} {secs:7.1f} s  {"FAILED " + err if err else "ok"}', flush=True)
    wall = time.time() - t0
    if not any(out.rglob('metrics.json')): sys.exit(f'no run finished in {out}; see the errors above')
    tab = summarise(out)
    print((out/'table.md').read_text()); print((out/'claims.md').read_text())
    if times:
        steps = {n: trainings(prm) * cfg['n_iter'] for n, _, prm in todo}
        df = pd.read_csv(out/'runs.csv').set_index('run')
        done = [n for n in times if n in df.index]
        s_per_step = sum(df.loc[n, 'metrics.train_time_s'] for n in done) / sum(steps[n] for n in done)
        ev = sum(df.loc[n, 'metrics.seconds'] for n in done) / len(done)  # the evaluator's time per run
        other = sum(times[n] - df.loc[n, 'metrics.train_time_s'] - df.loc[n, 'metrics.seconds'] for n in done) / len(done)
        full_cfg = dict(FULL, n_iter=cfg['n_iter']); full = grid(full_cfg, out); full_steps = sum(trainings(prm) for _, _, prm in full) * cfg['n_iter']
        est = (full_steps * s_per_step + len(full) * (other + ev * FULL['eval_n'] / cfg['eval_n'])) / a.jobs
        msg = (f'{len(times)} runs in {wall:.0f} s wall ({a.jobs} job(s)); {1e3 * s_per_step:.1f} ms per G step; per run '
               f'{ev:.1f} s evaluating {cfg["eval_n"]} samples and {other:.1f} s starting the notebook, loading data and writing.\n'
               f'Estimate for the full grid at {cfg["n_iter"]} G steps ({len(full)} runs, {full_steps} G steps, {FULL["eval_n"]} samples each) with '
               f'--jobs {a.jobs} on this machine: {est / 3600:.1f} h')
        print(msg); (out/'timing.txt').write_text(msg + '\n')
    return tab

if __name__ == '__main__': main()
