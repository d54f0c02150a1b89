"""Tables and claims of the STU-GAN replication, from its run folders.

The runs themselves are a grid spec, `bench/grids/stu.toml`, run by `sgn grid`: dense, static, SET, STU and GMP at
d_G in {0.05, 0.1, 0.2} with d_D = 0.5, three seeds each, plus IMP (lottery tickets) at d_G = 0.1.

    OMP_NUM_THREADS=1 sgn grid bench/grids/stu.toml --jobs 2             # 42 runs of 1500 G steps: 25 min on 2 cores
    OMP_NUM_THREADS=1 sgn grid bench/grids/stu.toml --jobs 2 --out runs/stu_4000steps \
        --set n_iter 4000 --set sample_every 4000 --set ckpt_every 4000  # the same grid at 4000 G steps
    OMP_NUM_THREADS=1 sgn grid bench/grids/stu_curves.toml --jobs 2      # FID over training, one seed at d_G = 0.1
    python bench/replicate_stu.py runs/stu_replication                   # this script: tables and claims
    OMP_NUM_THREADS=1 sgn grid bench/grids/stu_dD.toml --jobs 2          # d_D in {0.3, 1.0} beside the grid's 0.5
    python bench/replicate_stu.py runs/stu_dD --previous bench/results/stu_1500steps/runs.csv --results bench/results/stu_dD
    python bench/replicate_stu.py runs/stu_replication --previous bench/results/stu_1500steps/runs.csv --previous-methods all \
        --results bench/results/stu_baselines                            # the baselines added later, beside the first 42 runs

A finished run is skipped and an unfinished one continued, so a grid that was stopped continues where it stopped
(`sgn grid SPEC --list` shows where it stands). `--previous` adds the rows of an earlier `runs.csv` of the same
settings (a grid run in parts by code that reproduces it: a run named `check/...` repeats one earlier run, and the
script reports whether its numbers are the same). This script writes, in the grid's folder or `--results`:

- `runs.csv`: one row per run (parameters and metrics);
- `table.csv` and `table.md`: mean ± std over seeds of FID, IS, modes (of 1000) and training FLOPs relative to
  one dense run, per method and density;
- `claims.md`: the three claims checked against the means, with what holds and what does not;
- `itop.csv`: the generator's ITOP rate over training, per static, SET and STU run (from each `history.csv`);
- `fid_curves.csv`, when runs were evaluated during training: FID over training, per run;
- `check.csv`, when a `check/...` run repeats an earlier run: both rows' metrics side by side.
"""
import argparse, sys
from pathlib import Path
import pandas as pd

METHODS = ('dense', 'static', 'SNIP', 'SET', 'STU', 'STU-authors', 'GMP', 'GMP-global', 'IMP', 'IMP-LTH')  # the tags of bench/grids/stu.toml, in table order

def pm(x): return '–' if x.isna().all() else (f'{x.mean():.3g}' if len(x.dropna()) < 2 else f'{x.mean():.3g} ± {x.std():.2g}')

def summarise(out:Path, res:Path|None=None, previous:Path|None=None, previous_methods:str='same') -> pd.DataFrame:
    "Per-run table, the mean ± std table and the claims of the run folders under `out`, written into `res` (default `out`)."
    from sparse_gan_nb.experiment import collect_runs, markdown_table
    res = Path(res or out); res.mkdir(parents=True, exist_ok=True)
    df, unreadable = collect_runs(out)
    for run, why in unreadable: print(f'skipping {run}: its metrics.json cannot be read ({why})', file=sys.stderr)
    df['method'] = df['run'].str.split('/').str[0]
    check = df[df.method == 'check']
    df = df[df.method != 'check']
    if previous is not None:
        prev = pd.read_csv(previous)
        prev['method'] = prev['run'].str.split('/').str[0]
        keys = ['params.d_G', 'params.d_D', 'params.seed']
        if len(check):
            both = [dict(run=c['run'], **{k: c[k] for k in keys},
                         **{f'{w}.{m}': r[m] for w, r in (('now', c), ('before', p.iloc[0])) for m in ('metrics.fid', 'metrics.is_mean', 'metrics.modes', 'metrics.itop_G')})
                    for _, c in check.iterrows()
                    for p in [prev[(prev.method == c['run'].split('/')[1]) & (prev[keys] == c[keys]).all(axis=1)]] if len(p)]
            pd.DataFrame(both).to_csv(res/'check.csv', index=False)
        # the earlier grid's rows at the settings this grid does not run itself: of its methods and densities ('same'), or all
        mine = set(map(tuple, df[['method'] + keys].values.tolist()))
        keep = pd.Series([tuple(r) not in mine for r in prev[['method'] + keys].values.tolist()], index=prev.index)
        if previous_methods == 'same': keep &= prev.method.isin(set(df.method)) & prev['params.d_G'].isin(set(df['params.d_G']))
        prev = prev[keep]
        df = pd.concat([df, prev.assign(source=str(previous))], ignore_index=True)
    df.to_csv(res/'runs.csv', index=False)
    import json, os, platform, torch
    here = df[df['source'].isna()] if 'source' in df else df  # the runs of this grid, whose folders are under out
    meta = dict(runs=len(df), runs_here=len(here), previous=str(previous) if previous else None, methods=sorted(set(df.method)),
                n_iter=sorted(set(int(v) for v in here['params.n_iter'])), seeds=sorted(set(int(v) for v in df['params.seed'])),
                eval_n=sorted(set(int(v) for v in here['params.eval_n'].dropna())), train_s_here=round(float(here['metrics.train_time_s'].sum()), 1),
                check_runs=len(check), cpu=f'{os.cpu_count()} cores, {platform.processor() or platform.machine()}', torch=torch.__version__)
    (res/'meta.json').write_text(json.dumps(meta, indent=1) + '\n')
    cols = {'metrics.fid': 'FID ↓', 'metrics.is_mean': 'IS ↑', 'metrics.modes': 'modes ↑', 'metrics.train_flops_vs_dense': 'train FLOPs',
            'metrics.itop_G': 'ITOP (G)', 'metrics.train_time_s': 'time (s)'}
    rows = []
    dD = df['params.d_D'].where(df['method'] != 'dense', 1.0)
    for (m, d, dd), g in df.assign(_dD=dD).groupby(['method', 'params.d_G', '_dD'], sort=False):
        rows.append({'method': m, 'd_G': d, 'd_D': dd, 'seeds': len(g), **{v: pm(g[k]) for k, v in cols.items() if k in g}})
    tab = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METHODS)}
    tab = tab.assign(_k=[(m != 'dense', d, dd, order[m]) for m, d, dd in zip(tab['method'], tab['d_G'], tab['d_D'])]).sort_values('_k').drop(columns='_k').reset_index(drop=True)
    tab.to_csv(res/'table.csv', index=False)
    (res/'table.md').write_text(markdown_table(tab) + '\n')
    (res/'claims.md').write_text(claims(df) + '\n')
    hist = {run: pd.read_csv(out/run/'history.csv') for run in here['run']}
    def over_training(col, keep):  # `col` of each kept run's history.csv, on the rows that logged it
        return [hist[r['run']].dropna(subset=[col])[['iter', col]].assign(method=r['method'], d_G=r['params.d_G'], d_D=r['params.d_D'], seed=r['params.seed'])
                for _, r in here.iterrows() if keep(r, hist[r['run']])]
    curves = over_training('G_itop', lambda r, h: r['method'] in ('static', 'SET', 'STU', 'STU-authors') and 'G_itop' in h)
    if curves: pd.concat(curves).to_csv(res/'itop.csv', index=False)
    fids = over_training('fid', lambda r, h: 'fid' in h and h['fid'].notna().sum() > 1)
    if fids: pd.concat(fids).to_csv(res/'fid_curves.csv', index=False)
    return tab

def within(a, b) -> str:
    "' (within one std)' when two (mean, std) rows differ by less than the larger std."
    return ' (within one std)' if abs(a['mean'] - b['mean']) < max(a['std'], b['std']) else ''

def claims(df:pd.DataFrame) -> str:
    "Check the claims on the seed means of FID; report every comparison, not only those that hold."
    if df['params.d_D'][df.method != 'dense'].nunique() > 1: return claims_dD(df)
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
    base = [('STU-authors', 'STU', "STU with the authors' choices (regrow_pruned, opt_policy keep, conv_only) against the library's STU"),
            ('SNIP', 'static', 'SNIP (static masks chosen by connection sensitivity) against random static masks'),
            ('GMP-global', 'GMP', 'GMP with one global threshold over G\'s convolutions (the authors\') against per-layer GMP'),
            ('IMP-LTH', 'IMP', "IMP on GAN-LTH's schedule (global, 20 % per round) against the 3-round per-layer schedule"),
            ('STU', 'GMP-global', 'STU against the authors\' GMP'), ('STU', 'IMP-LTH', 'STU against GAN-LTH\'s IMP')]
    extra = [(a, b, t) for a, b, t in base if a in mean.index.get_level_values(0) and b in mean.index.get_level_values(0)]
    if extra: lines += ['', '4. The baselines as the literature runs them (mean FID, lower is better):']
    for a, b, t in extra:
        for d in sorted(set(d for m, d in mean.index if m == a)):
            x, y = get(a, d), get(b, d)
            if y is None: continue
            lines.append(f"   - {t}, d_G={d}: {x['mean']:.3g} ± {x['std']:.2g} vs {y['mean']:.3g} ± {y['std']:.2g} "
                         f"({a} {'lower' if x['mean'] < y['mean'] else 'higher'}{within(x, y)}; {a} at {cost.loc[(a, d)]:.3g}× dense FLOPs, {b} at {cost.loc[(b, d)]:.3g}×)")
    return '\n'.join(lines).replace('nan', 'n/a')

def claims_dD(df:pd.DataFrame) -> str:
    "The unbalanced-densities claim: how FID moves with D's density d_D, per method and d_G, on the seed means."
    g = df.groupby(['method', 'params.d_G', 'params.d_D'])['metrics.fid'].agg(['mean', 'std', 'count'])
    lines = ['# What the discriminator\'s density d_D does (mean FID over seeds, lower is better)', '']
    for m in [m for m in METHODS if m in g.index.get_level_values(0)]:
        for d in sorted(set(d for mm, d, _ in g.index if mm == m)):
            rows = g.loc[(m, d)]
            best = rows['mean'].idxmin()
            lines.append(f"- {m}, d_G={d}: " + ', '.join(f"d_D={dd}: {r['mean']:.3g} ± {r['std']:.2g}" for dd, r in rows.iterrows()) +
                         f"; best at d_D={best}" + ('; every other d_D within one std of it' if all(within(r, rows.loc[best]) for dd, r in rows.iterrows() if dd != best)
                                                    else '; ' + ', '.join(f'd_D={dd} is more than one std worse' for dd, r in rows.iterrows() if dd != best and not within(r, rows.loc[best]))))
    lines += ['']
    for d in sorted(set(d for m, d, _ in g.index if m == 'STU')):
        for dd in sorted(set(dd for m, x, dd in g.index if m == 'STU' and x == d)):
            if ('static', d, dd) not in g.index: continue
            s, t = g.loc[('STU', d, dd)], g.loc[('static', d, dd)]
            lines.append(f"- STU against static at d_G={d}, d_D={dd}: {s['mean']:.3g} vs {t['mean']:.3g}: STU "
                         f"{'better' if s['mean'] < t['mean'] else 'NOT better'}{within(s, t)}")
    return '\n'.join(lines).replace('nan', 'n/a')

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out', help='the folder of the run folders (the grid\'s out)')
    p.add_argument('--results', help='where the tables go (default: out)')
    p.add_argument('--previous', help="an earlier grid's runs.csv whose rows join this grid's (same settings, run before)")
    p.add_argument('--previous-methods', default='same', choices=('same', 'all'),
                   help="which earlier rows join: of this grid's methods and d_G only (same), or every row (all)")
    a = p.parse_args(argv)
    out = Path(a.out)
    if not any(out.rglob('metrics.json')): sys.exit(f'no finished run in {out}: run the grid first (sgn grid bench/grids/stu.toml)')
    res = Path(a.results or out)
    tab = summarise(out, res, a.previous and Path(a.previous), a.previous_methods)
    print((res/'table.md').read_text()); print((res/'claims.md').read_text())
    return tab

if __name__ == '__main__': main()
