"""Tables and claims of the STU-GAN replication, from its run folders.

The runs themselves are a grid spec, `bench/grids/stu.toml`, run by `sgn grid`: dense, static, SET, STU and GMP at
d_G in {0.05, 0.1, 0.2} with d_D = 0.5, three seeds each, plus IMP (lottery tickets) at d_G = 0.1.

    OMP_NUM_THREADS=1 sgn grid bench/grids/stu.toml --jobs 2             # 42 runs of 1500 G steps: 25 min on 2 cores
    OMP_NUM_THREADS=1 sgn grid bench/grids/stu.toml --jobs 2 --out runs/stu_4000steps \
        --set n_iter 4000 --set sample_every 4000 --set ckpt_every 4000  # the same grid at 4000 G steps
    OMP_NUM_THREADS=1 sgn grid bench/grids/stu_curves.toml --jobs 2      # FID over training, one seed at d_G = 0.1
    python bench/replicate_stu.py runs/stu_replication                   # this script: tables and claims

A finished run is skipped and an unfinished one continued, so a grid that was stopped continues where it stopped
(`sgn grid SPEC --list` shows where it stands). This script writes, in the grid's folder:

- `runs.csv`: one row per run (parameters and metrics);
- `table.csv` and `table.md`: mean ± std over seeds of FID, IS, modes (of 1000) and training FLOPs relative to
  one dense run, per method and density;
- `claims.md`: the three claims checked against the means, with what holds and what does not;
- `itop.csv`: the generator's ITOP rate over training, per static, SET and STU run (from each `history.csv`);
- `fid_curves.csv`, when runs were evaluated during training: FID over training, per run.
"""
import argparse, sys
from pathlib import Path
import pandas as pd

METHODS = ('dense', 'static', 'SNIP', 'SET', 'STU', 'STU-authors', 'GMP', 'GMP-global', 'IMP', 'IMP-LTH')  # the tags of bench/grids/stu.toml, in table order

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
    p.add_argument('out', help='the folder of the run folders (the grid\'s out)')
    a = p.parse_args(argv)
    out = Path(a.out)
    if not any(out.rglob('metrics.json')): sys.exit(f'no finished run in {out}: run the grid first (sgn grid bench/grids/stu.toml)')
    tab = summarise(out)
    print((out/'table.md').read_text()); print((out/'claims.md').read_text())
    return tab

if __name__ == '__main__': main()
