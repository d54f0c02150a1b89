"""Evaluation, tables and claims of the DGL-GAN replication, on 16-pixel stacked digits, from its run folders.

The runs are grid specs run by `sgn grid` into one folder: `bench/grids/dgl_teacher.toml` (the teacher, a dense
DCGAN of width 2) first, then `bench/grids/dgl.toml` (students at 1/2, 1/4 and 1/8 of its width, alone, with the
teacher D's term in two stages and in one, with a distillation term from the teacher G instead, a sweep of each
term's weight and fresh stage-2 optimizers; seeds 0, 1, 2) and, optionally, `bench/grids/dgl_boost.toml` (boost mode at the teacher's
width). A finished run is skipped and an unfinished one continued.

    OMP_NUM_THREADS=1 sgn grid bench/grids/dgl_teacher.toml
    OMP_NUM_THREADS=1 sgn grid bench/grids/dgl.toml --jobs 2
    OMP_NUM_THREADS=1 sgn grid bench/grids/dgl_boost.toml --jobs 2   # optional
    OMP_NUM_THREADS=1 python bench/replicate_dgl.py runs/dgl_replication --results bench/results/dgl_replication

This script evaluates each run's EMA generator the same way, with the library's Evaluator (FID, IS,
precision/recall on the digits classifier's features, modes of 1000; kept as eval.json in the run folder, so it is
done once), plus its generator loss under the frozen teacher D, and writes into --results:

- `runs.csv`: one row per run (method, widths, lambda, lambda_KD, schedule, seed, training time and every metric);
- `summary.csv`: mean and std over seeds per method and width, with the generator's parameters and MACs;
- `claims.md`: each claim checked by code on paired seeds, saying where a difference is inside the spread;
- `curves.csv`: the losses over training of the runs at the narrowest width;
- `teacher_bn.csv`: how the frozen teacher D scores real and fake images with batch or running BatchNorm statistics;
- `meta.json`: the commands, sample counts, the real data's own scores, the machine and the wall times.
"""
import argparse, json, os, platform, re, sys, time
from pathlib import Path
os.environ.setdefault('OMP_NUM_THREADS', '1')
import numpy as np, pandas as pd, torch
from sparse_gan_nb.core import CKPT_NAME
from sparse_gan_nb.data import gan_dls, get_data
from sparse_gan_nb.distill import load_teacher, width_table
from sparse_gan_nb.evaluate import Evaluator
from sparse_gan_nb.experiment import collect_runs, markdown_table
from sparse_gan_nb.learner import sample_generator
from sparse_gan_nb.losses import get_loss

METHODS = {'teacher': 'teacher', 'vanilla': 'vanilla', 'dgl2': 'DGL, two stages', 'dgl1': 'DGL, one stage',
           'kd2': 'KD from teacher G, two stages', 'lam': 'DGL, two stages', 'reset': 'DGL, two stages, fresh optimizers',
           'kdw': 'KD from teacher G, two stages'}
KD_TUNED = 30.  # the KD weight run at every width: the best of the sweep's first four values at 1/4 width (bench/grids/dgl.toml)
SWEEPS = {'lam': 'dgl2', 'kdw': 'kd2'}  # a sweep's runs are its method's runs at other weights
RUN_NAME = re.compile(r'^(teacher|vanilla|dgl2|dgl1|kd2|kdw|lam|reset)')  # the folder names of bench/grids/dgl*.toml
METRICS = ('fid', 'is_mean', 'precision', 'recall', 'modes', 'mode_kl')

def find_runs(out:Path) -> pd.DataFrame:
    "One row per finished run of the replication under `out`: its method, absolute widths, λ, schedule and seed."
    df, bad = collect_runs(out)
    for run, why in bad: print(f'skipping {run}: {why}', file=sys.stderr)
    teacher = df[df.run == 'teacher']
    if teacher.empty: sys.exit(f'no finished teacher in {out}: run bench/grids/dgl_teacher.toml first')
    tw = float(teacher['params.width'].iloc[0])
    rows = []
    for _, r in df.iterrows():
        m = RUN_NAME.match(r['run'])
        if not m: continue
        g = lambda k, d=None: d if k not in r or pd.isna(r[k]) else r[k]
        dense = m[1] in ('teacher', 'vanilla')
        width = float(g('params.width')) if dense else tw * float(g('params.width_mult'))
        lam = 0. if dense else float(g('params.lam'))
        rows.append(dict(run=r['run'], method=SWEEPS.get(m[1], m[1]), width=width, width_mult=width / tw, lam=lam,
                         kd=0. if dense else float(g('params.kd', 0.) or 0.), stage1=None if dense else float(g('params.stage1')),
                         reset_opt=False if dense else bool(g('params.reset_opt', False)), seed=int(r['params.seed']),
                         n_iter=int(r['params.n_iter']), train_s=float(r['metrics.train_time_s'])))
    return pd.DataFrame(rows)

def evaluate(run_dir:Path, ev:Evaluator, dls, teacher_D) -> dict:
    "Metrics of the run's EMA generator, and its generator loss under the frozen teacher D (1024 samples, batches of 64); kept in eval.json."
    f = run_dir/'eval.json'
    if f.exists():
        e = json.loads(f.read_text())
        if e.get('n_samples') == ev.n_samples and 'G_params' in e: return e
    G = load_teacher(run_dir/CKPT_NAME, dls).G
    m = ev.evaluate_generator(G)
    with torch.no_grad():
        x = sample_generator(G, 1024, seed=1)
        dt = float(np.mean([get_loss('hinge').g_loss(teacher_D(x[i:i+64])).item() for i in range(0, len(x), 64)]))
    keep = {k: m[k] for k in METRICS + ('n_samples',)} | dict(loss_under_teacher=dt, G_params=sum(p.numel() for p in G.parameters()))
    f.write_text(json.dumps(keep))
    return keep

def label(r) -> str:
    "The row's name in the tables: its method, with λ where it differs from DGL's 0.1, and λ_KD where it differs from KD's 1."
    if r.method in ('dgl2', 'dgl1', 'reset') and r.lam != .1: return f'{METHODS[r.method]}, λ = {r.lam:g}'
    if r.method == 'kd2' and r.kd != 1.: return f'{METHODS[r.method]}, λ_KD = {r.kd:g}'
    return METHODS[r.method]

def summarise(df:pd.DataFrame, sizes:pd.DataFrame) -> pd.DataFrame:
    "Mean and std over seeds of every metric, per method (with its term's weight) and absolute width."
    rows = []
    for (name, w), g in df.groupby(['label', 'width'], sort=False):
        row = dict(method=name, width=w, width_mult=g.width_mult.iloc[0], lam=g.lam.iloc[0], kd=g.kd.iloc[0], seeds=len(g),
                   G_params=int(sizes.loc[g.width_mult.iloc[0], 'G_params']), G_macs=int(sizes.loc[g.width_mult.iloc[0], 'G_macs']))
        for k in METRICS + ('loss_under_teacher', 'train_s'):
            row[k + '_mean'], row[k + '_std'] = g[k].mean(), g[k].std() if len(g) > 1 else float('nan')
        rows.append(row)
    return pd.DataFrame(rows)

def paired(df:pd.DataFrame, a:str, b:str, w:float) -> dict|None:
    "FID of label a against label b at width w on the seeds both have: wins of a, mean change, and the larger seed std."
    x = df[(df.label == a) & (df.width == w)].set_index('seed').fid
    y = df[(df.label == b) & (df.width == w)].set_index('seed').fid
    s = x.index.intersection(y.index)
    if len(s) == 0: return None
    d = x[s] - y[s]
    return dict(wins=int((d < 0).sum()), n=len(s), change=float(d.mean()), a=float(x[s].mean()), b=float(y[s].mean()),
                spread=float(max(x[s].std(), y[s].std())) if len(s) > 1 else float('nan'))

def verdict(p:dict, a:str, b:str) -> str:
    "One sentence: the paired FID comparison and whether it is inside the spread over seeds."
    head = f"{a} ({p['a']:.2f}) against {b} ({p['b']:.2f}): lower in {p['wins']}/{p['n']} seeds, mean change {p['change']:+.2f}, "
    if p['n'] < 2: return head + 'one seed, so no spread to compare with'
    inside = abs(p['change']) < p['spread']
    return head + (f"inside the spread over seeds (std up to {p['spread']:.2f})" if inside else f"larger than the spread over seeds (std up to {p['spread']:.2f})")

def sweep(df:pd.DataFrame, w:float, method:str, col:str, name:str) -> tuple:
    "FID of a term's weight sweep at width w, two stages (weight 0 is the vanilla student): a sentence, and the weight above 0 with the lowest mean."
    s = df[(df.width == w) & ((df.method == method) | (df.method == 'vanilla'))]
    by = s.groupby(col).fid.agg(['mean', 'std'])
    if len(by) <= 2: return '', None
    best = by['mean'].idxmin()
    far = [l for l, r in by.iterrows() if l != best and abs(r['mean'] - by.loc[best, 'mean']) >= max(r['std'], by.loc[best, 'std'])]
    line = (f'{name} at width {w:g} (two stages; {name} = 0 is the vanilla student): ' +
            ', '.join(f"{name} = {l:g}: {r['mean']:.2f} ± {r['std']:.2f}" for l, r in by.iterrows()) +
            f'. The lowest mean is at {name} = {best:g}; ' +
            ('every other mean is within one std of it.' if not far else
             f'further than one std from it: {name} = ' + ', '.join(f'{l:g}' for l in far) + '.'))
    modes, dt = s.groupby(col).modes.mean(), s.groupby(col).loss_under_teacher.mean()
    for l in [l for l in modes.index if modes[l] < .5 * modes[0.]]:
        line += (f' At {name} = {l:g} the students collapse: {modes[l]:.0f} modes of 1000 against {modes[0.]:.0f} alone, and a loss '
                 f'under the teacher D of {dt[l]:.2f} against {dt[0.]:.2f}' +
                 (': they fool the frozen teacher instead of learning the data.' if dt[l] < dt[0.] else '.'))
    return line, by.drop(0., errors='ignore')['mean'].idxmin()

def claims(df:pd.DataFrame, teacher:pd.Series) -> list:
    out = ['# Claims checked on FID (lower is better), paired by seed', '']
    van1 = df[(df.method == 'vanilla') & (df.width == 1.)].fid
    if len(van1):
        gap = (van1.mean() - teacher.fid) / van1.std() if len(van1) > 1 else float('nan')
        out += [f'0. The teacher (width {teacher.width:g}, {teacher.n_iter} G steps) has FID {teacher.fid:.2f}; students of width 1 '
                f'trained alone reach {van1.mean():.2f} ± {van1.std():.2f}, so the teacher is {gap:.1f} of their seed std better.', '']
    widths = sorted(set(df[(df.method == 'dgl2') & (df.width < teacher.width)].width), reverse=True)  # boost mode is claim 8
    D2, D1, KD, V = METHODS['dgl2'], METHODS['dgl1'], METHODS['kd2'], METHODS['vanilla']
    KDT = label(pd.Series(dict(method='kd2', lam=0., kd=KD_TUNED)))
    for title, a, b in (('1. A student with the teacher D\'s term beats the student trained alone', D2, V),
                        ('2. Two stages are at least as good as one, and more stable', D2, D1),
                        ('3. The teacher\'s discriminator is a better guide than its generator (DGL against the KD baseline)', D2, KD),
                        ('   The KD baseline against the student trained alone', KD, V),
                        (f'   DGL against the KD baseline at λ_KD = {KD_TUNED:g} (tuned at width {teacher.width * .25:g}, then run at every width)', D2, KDT),
                        (f'   The KD baseline at λ_KD = {KD_TUNED:g} against the student trained alone', KDT, V),
                        ('   One stage against the student trained alone', D1, V)):
        out.append(title + ':')
        for w in widths:
            p = paired(df, a, b, w)
            if p is None: continue
            line = f'   - width {w:g}: {verdict(p, a, b)}'
            if b == D1:
                s2, s1 = df[(df.label == D2) & (df.width == w)].fid.std(), df[(df.label == D1) & (df.width == w)].fid.std()
                line += f'; FID std over seeds {s2:.2f} (two stages) against {s1:.2f} (one stage)'
            out.append(line + '.')
        out.append('')
    w4, best = teacher.width * .25, {}
    for n, method, col, name in ((4, 'dgl2', 'lam', 'λ'), (5, 'kd2', 'kd', 'λ_KD')):
        line, best[method] = sweep(df, w4, method, col, name)
        if line: out += [f'{n}. ' + line, '']
    if None not in best.values():
        dgl = label(pd.Series(dict(method='dgl2', lam=best['dgl2'], kd=0.)))
        kd = label(pd.Series(dict(method='kd2', lam=0., kd=best['kd2'])))
        p = paired(df, dgl, kd, w4)
        if p: out += [f'6. Each term at its best weight (width {w4:g}): {verdict(p, dgl, kd)}. Both weights were picked by the lowest '
                      'mean FID on these same seeds, which flatters each term alike.', '']
    for w in sorted(set(df[df.method == 'reset'].width)):
        p = paired(df, METHODS['reset'], D2, w)
        if p: out += [f'7. Fresh optimizers for stage 2 (width {w:g}): {verdict(p, "fresh optimizers", "continued optimizers")}.', '']
    if ((df.width == teacher.width) & (df.label == V)).any():
        out.append(f'8. Boost (students as wide as the teacher, {int(df[(df.width == teacher.width) & (df.label == V)].n_iter.max())} G steps; '
                   f'the teacher had {teacher.n_iter} and FID {teacher.fid:.2f}):')
        for a in (D2, D1):
            b = df[(df.width == teacher.width) & (df.label == a)]
            p = paired(df, a, V, teacher.width)
            if p: out.append(f'   - {verdict(p, a, V)}; {int((b.fid < teacher.fid).sum())}/{len(b)} of these students below the teacher.')
        out.append('')
    return out

def curves(df:pd.DataFrame, out:Path, w:float) -> pd.DataFrame:
    "history.csv of every run at width w of the vanilla, DGL and KD (λ_KD 1 and KD_TUNED) students: the losses over training."
    kdt = label(pd.Series(dict(method='kd2', lam=0., kd=KD_TUNED)))
    keep = df[(df.width == w) & df.label.isin([METHODS[m] for m in ('vanilla', 'dgl2', 'dgl1', 'kd2')] + [kdt])]
    cols = ['iter', 'loss_g', 'loss_d', 'loss_teacher', 'loss_kd']
    return pd.concat([pd.read_csv(out/r.run/'history.csv').reindex(columns=cols).assign(method=r.label, width=w, seed=r.seed)
                      for r in keep.itertuples()])

@torch.no_grad()
def teacher_bn(teacher_ck:Path, dls, n:int=512) -> pd.DataFrame:
    "The frozen teacher D on n held-out real images and n samples of the teacher's EMA G, in batches of 64, per BatchNorm mode."
    real = get_data('stacked_digits', size=16, split='valid', n=n)[0]
    rows = []
    for bn in ('batch', 'running'):
        T = load_teacher(teacher_ck, dls, bn=bn)
        fake = sample_generator(T.G, n, seed=2)
        r = torch.cat([T.D(real[i:i+64]).flatten() for i in range(0, n, 64)])
        f = torch.cat([T.D(fake[i:i+64]).flatten() for i in range(0, n, 64)])
        rows.append(dict(bn=bn, real_mean=r.mean().item(), real_std=r.std().item(), fake_mean=f.mean().item(), fake_std=f.std().item(),
                         separated=((r > 0).float().mean().item() + (f < 0).float().mean().item()) / 2, n=n))
    return pd.DataFrame(rows)

def main(argv=None):
    t0 = time.time()
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out', help="the grids' folder (runs/dgl_replication)")
    p.add_argument('--results', help='where the tables go (default: the grids\' folder)')
    p.add_argument('--eval-samples', type=int, default=2000)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out).absolute()
    res = Path(a.results or out); res.mkdir(parents=True, exist_ok=True)
    runs = find_runs(out)
    dls = gan_dls('stacked_digits', bs=64, seed=0, size=16)
    ev = Evaluator('stacked_digits', size=16, n_samples=a.eval_samples, metrics=('fid', 'is', 'pr', 'modes'))
    teacher_ck = out/'teacher'/CKPT_NAME
    T = load_teacher(teacher_ck, dls)
    df = pd.DataFrame([r | evaluate(out/r['run'], ev, dls, T.D) for r in runs.to_dict('records')])
    df['label'] = [label(r) for r in df.itertuples()]
    order = {m: i for i, m in enumerate(METHODS)}  # teacher, vanilla, DGL two stages, one stage, KD, λ sweep, fresh optimizers
    df = df.assign(_o=df.method.map(order)).sort_values(['width', '_o', 'lam', 'kd', 'seed'], ascending=[False, True, True, True, True]).drop(columns='_o')
    df.drop(columns='label').to_csv(res/'runs.csv', index=False)
    sizes = width_table(T, sorted(set(df.width_mult), reverse=True))
    summary = summarise(df, sizes)
    summary.to_csv(res/'summary.csv', index=False)
    teacher = df[df.method == 'teacher'].iloc[0]
    (res/'claims.md').write_text('\n'.join(claims(df, teacher)) + '\n')
    curves(df, out, min(df.width)).to_csv(res/'curves.csv', index=False)
    teacher_bn(teacher_ck, dls).to_csv(res/'teacher_bn.csv', index=False)
    real = get_data('stacked_digits', size=16, split='valid', n=a.eval_samples)[0]
    ref = {k: v for k, v in ev.evaluate_images(real).items() if k in METRICS + ('n_samples',)}
    boost = ['OMP_NUM_THREADS=1 sgn grid bench/grids/dgl_boost.toml --jobs 2'] if (df.width == teacher.width).sum() > 1 else []
    meta = dict(commands=['OMP_NUM_THREADS=1 sgn grid bench/grids/dgl_teacher.toml', 'OMP_NUM_THREADS=1 sgn grid bench/grids/dgl.toml --jobs 2',
                          *boost, f'OMP_NUM_THREADS=1 python bench/replicate_dgl.py {a.out} --results {a.results or a.out}'],
                data='stacked_digits', img_size=16, eval_samples=a.eval_samples, n_ref=ev.n_ref, extractor=ev.extractor.name,
                teacher_loss_samples=1024, held_out_real=ref, runs=len(df), train_s_total=float(df.train_s.sum()),
                eval_s=round(time.time() - t0, 1), cpu=f'{os.cpu_count()} cores, {platform.processor() or platform.machine()}', torch=torch.__version__)
    (res/'meta.json').write_text(json.dumps(meta, indent=1) + '\n')
    cols = ['method', 'width', 'seeds'] + [c for k in ('fid', 'is_mean', 'precision', 'recall', 'modes') for c in (k + '_mean', k + '_std')]
    print(markdown_table(summary[cols], '.3g')); print((res/'claims.md').read_text())
    print(f'{len(df)} runs; evaluation took {meta["eval_s"]:.0f} s')

if __name__ == '__main__': main()
