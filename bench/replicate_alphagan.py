"""The alphaGAN replication on 16-px stacked digits: does the search find better generators than chance?

The searches are a grid spec, `bench/grids/alphagan_search.toml` (the `cpu` preset, search seeds 0, 1, 2, and one
search at the authors' arch lr 3e-4). This script then writes the retraining grid and, once it ran, the tables:

    OMP_NUM_THREADS=1 sgn grid bench/grids/alphagan_search.toml --jobs 2   # the searches, into runs/alphagan/search
    python bench/replicate_alphagan.py retrain-spec runs/alphagan           # runs/alphagan/retrain.toml and genotypes/
    OMP_NUM_THREADS=1 sgn grid runs/alphagan/retrain.toml --jobs 2          # the retrains, into runs/alphagan/retrain
    python bench/replicate_alphagan.py compose-spec runs/alphagan           # runs/alphagan/compose.toml (needs the retrains)
    OMP_NUM_THREADS=1 sgn grid runs/alphagan/compose.toml --jobs 2          # the seed-0 genotype trained sparse and distilled
    python bench/replicate_alphagan.py summarise runs/alphagan [--copy-to bench/results/alphagan_cpu]

Retrained, each with the same budget (the dense baseline notebook, 800 G steps, n_critic 2, bs 64, Adam 2e-4 (0, 0.9),
EMA 0.99, FID/IS/modes on 2000 samples in the stacked-digits classifier's features):
- `searched`: the genotype of each search seed s, retrained with seed s;
- `random`: for each s, 5 genotypes drawn uniformly from the same space with parameters within ±5 % of the searched
  one (`random_genotypes(seed=s)`, never the searched one), retrained with seed s;
- `noise`: the seed-0 genotype retrained with seeds 1 and 2 (with `searched` seed 0: the retrain noise floor);
- `lr3e-4`: the genotype of the search at the authors' arch lr, retrained with seed 0;
- `published`: the authors' alphaGAN_l and alphaGAN_s at the same width, seed 0;
- `compose`: the seed-0 genotype trained sparse with STU-GAN (d_G 0.2, d_D 0.5, the stu_gan notebook) and distilled
  with DGL-GAN (a half-width student of it, learning also from the frozen D of its `searched` retrain as teacher).

`summarise` writes `retrains.csv` (one row per retrain), `searches.csv` (one row per search), `table.md` and
`claims.md` (a one-sided Mann-Whitney U test of searched against random FIDs, per-seed ranks, the noise floor, and
how decided alpha was), into the run folder, and with `--copy-to` these and each search's `search.csv`,
`alphas.json` and `genotype.json` into a results folder.
"""
import argparse, json, shutil, sys
from pathlib import Path
import pandas as pd

SIZE = dict(nz=32, img_size=16, nc=3, width=0.0625)  # the searches' generator size (bench/grids/alphagan_search.toml)
RETRAIN = dict(dataset='stacked_digits', img_size=16, model='alphagan', width=0.0625, d_width=0.25, nz=32, loss='hinge', bs=64,
               lr_g=2e-4, lr_d=2e-4, beta1=0.0, beta2=0.9, n_critic=2, ema=0.99, n_iter=800, eval_n=2000, eval_metrics='fid,is,modes',
               device='cpu', log_every=100, sample_every=800, ckpt_every=400)
N_RANDOM, SEEDS = 5, (0, 1, 2)
KINDS = ('searched', 'random', 'noise', 'lr3e-4', 'published', 'compose')  # the retrains' kinds, in table order

def toml_value(v): return json.dumps(v) if isinstance(v, str) else repr(v)

def retrain_spec(out:Path) -> Path:
    "Draw the matched random genotypes and write the retraining grid, `out/retrain.toml`."
    from sparse_gan_nb.search import Genotype, random_genotypes, genotype_params
    gdir = out/'genotypes'; gdir.mkdir(parents=True, exist_ok=True)
    blocks = []
    def block(tag, name, genotype, seed): blocks.append(dict(tag=tag, name=name, genotype=str(Path(genotype).resolve()), seed=seed))
    for s in SEEDS:
        f = out/'search'/'lr3e-3'/f'seed{s}'/'genotype.json'
        if not (f.parent/'metrics.json').exists(): sys.exit(f'search seed {s} has not finished ({f.parent}); run the search grid first')
        g = Genotype.load(f)
        block('searched', f'retrain/searched/s{s}', f, s)
        target = genotype_params(g, **SIZE)
        for k, r in enumerate(random_genotypes(N_RANDOM, seed=s, match_params=target, tol=0.05, exclude=[g], **SIZE)):
            p = r.save(gdir/f'random_s{s}_{k}.json', **SIZE, params=genotype_params(r, **SIZE), matched_to=target)
            block('random', f'retrain/random/s{s}_{k}', p, s)
    for s in SEEDS[1:]: block('noise', f'retrain/noise/s0_seed{s}', out/'search'/'lr3e-3'/'seed0'/'genotype.json', s)
    f = out/'search'/'lr3e-4'/'seed0'/'genotype.json'
    if f.exists(): block('lr3e-4', 'retrain/lr3e-4/s0', f, 0)
    for name in ('alphaGAN_l', 'alphaGAN_s'): blocks.append(dict(tag='published', name=f'retrain/published/{name}', genotype=name, seed=0))
    lines = ['# Written by bench/replicate_alphagan.py retrain-spec: the retrains of the alphaGAN replication.',
             'notebook = "dense_baseline"', f'out = {toml_value(str(out.resolve()))}', '', '[params]']
    lines += [f'{k} = {toml_value(v)}' for k, v in RETRAIN.items()]
    for b in blocks: lines += ['', '[[block]]'] + [f'{k} = {toml_value(v)}' for k, v in b.items()]
    spec = out/'retrain.toml'
    spec.write_text('\n'.join(lines) + '\n')
    print(f'{len(blocks)} retrains in {spec}')
    return spec

def compose_spec(out:Path) -> Path:
    "The composition runs, which need the seed-0 genotype's retrain as the DGL teacher: `out/compose.toml`."
    g0, teacher = out/'search'/'lr3e-3'/'seed0'/'genotype.json', out/'retrain'/'searched'/'s0'/'checkpoint.safetensors'
    if not (teacher.parent/'metrics.json').exists(): sys.exit(f'the seed-0 retrain has not finished ({teacher.parent}); run the retrain grid first')
    common = {k: v for k, v in RETRAIN.items() if k not in ('model', 'width', 'd_width', 'nz', 'img_size', 'dataset')}
    stu = dict(notebook='stu_gan', name='retrain/compose/stu_dG0.2', dataset='stacked_digits', img_size=16, model='alphagan',
               genotype=str(g0.resolve()), width=RETRAIN['width'], d_width=RETRAIN['d_width'], nz=RETRAIN['nz'], method='sparse',
               d_G=0.2, d_D=0.5, delta_t=100, seed=0)
    dgl = dict(notebook='dgl_gan', name='retrain/compose/dgl_w0.5', teacher_ckpt=str(teacher.resolve()), dataset='stacked_digits',
               img_size=16, width_mult=0.5, d_width_mult=1.0, lam=0.1, stage1=0.5, seed=0)
    lines = ['# Written by bench/replicate_alphagan.py compose-spec: a searched genotype trained sparse and distilled.',
             'notebook = "dense_baseline"', f'out = {toml_value(str(out.resolve()))}', '', '[params]']
    lines += [f'{k} = {toml_value(v)}' for k, v in common.items()]
    for b in (stu, dgl): lines += ['', '[[block]]'] + [f'{k} = {toml_value(v)}' for k, v in b.items()]
    spec = out/'compose.toml'
    spec.write_text('\n'.join(lines) + '\n')
    print(f'2 runs in {spec}')
    return spec

def _search_row(d:Path) -> dict:
    m = json.loads((d/'metrics.json').read_text())
    mm, p = m['metrics'], m['params']
    return dict(search=str(d.relative_to(d.parents[2])), seed=p['seed'], arch_lr=p.get('arch_lr') or 3e-3, rounds=mm['rounds'],
                search_time_s=mm['search_time_s'], genotype_params=mm['genotype_params'], genotype_changes=mm['genotype_changes'],
                last_change_round=mm['last_change_round'], dg_first=mm['dg_first'], dg_last=mm['dg_last'],
                alpha_entropy=mm['alpha_entropy'], alpha_margin=mm['alpha_margin'], alpha_margin_min=mm['alpha_margin_min'])

def summarise(out:Path, copy_to:Path|None=None):
    from scipy.stats import mannwhitneyu
    from sparse_gan_nb.experiment import collect_runs, markdown_table
    from sparse_gan_nb.search import as_genotype
    searches = pd.DataFrame([_search_row(d.parent) for d in sorted((out/'search').glob('*/seed*/metrics.json'))])
    df, bad = collect_runs(out/'retrain')
    for run, why in bad: print(f'skipping {run}: {why}', file=sys.stderr)
    parts = df['run'].str.split('/')
    df = pd.DataFrame(dict(run=df['run'], kind=parts.str[0], seed=df['params.seed'],
                           search_seed=[int(x.split('_')[0][1:]) if k in ('searched', 'random', 'noise') else None for k, x in zip(parts.str[0], parts.str[1])],
                           params_G=df['metrics.params_G'], stored_params_G=df.get('metrics.stored_params_G'), fid=df['metrics.fid'],
                           is_mean=df['metrics.is_mean'], modes=df['metrics.modes'], train_time_s=df['metrics.train_time_s'],
                           genotype=[json.dumps(as_genotype(g).ops) if isinstance(g, str) else '' for g in df['params.genotype']]))
    df['_k'] = df['kind'].map({k: i for i, k in enumerate(KINDS)})
    df = df.sort_values(['_k', 'search_seed', 'run']).drop(columns='_k').reset_index(drop=True)
    searched = df[(df.kind == 'searched')].set_index('search_seed')
    random = df[df.kind == 'random']
    fid_u = mannwhitneyu(searched['fid'], random['fid'], alternative='less')
    modes_u = mannwhitneyu(searched['modes'], random['modes'], alternative='greater')
    ranks = {int(s): int((random[random.search_seed == s]['fid'] < searched.loc[s, 'fid']).sum() + 1) for s in searched.index}
    floor = pd.concat([searched.loc[[0], 'fid'], df[df.kind == 'noise']['fid']])
    summary = dict(n_searched=len(searched), n_random=len(random), fid_searched_median=float(searched['fid'].median()),
                   fid_random_median=float(random['fid'].median()), fid_median_diff=float(searched['fid'].median() - random['fid'].median()),
                   fid_u=float(fid_u.statistic), fid_p=float(fid_u.pvalue), modes_u=float(modes_u.statistic), modes_p=float(modes_u.pvalue),
                   ranks=ranks, noise_floor_fid_std=float(floor.std()), noise_floor_fid_range=float(floor.max() - floor.min()),
                   noise_floor_n=len(floor), random_fid_std=float(random['fid'].std()))
    df.to_csv(out/'retrains.csv', index=False); searches.to_csv(out/'searches.csv', index=False)
    (out/'summary.json').write_text(json.dumps(summary, indent=1) + '\n')
    tab = df.groupby('kind', sort=False).agg(runs=('fid', 'size'), params=('params_G', 'median'), fid=('fid', 'mean'),
                                            fid_std=('fid', 'std'), is_mean=('is_mean', 'mean'), modes=('modes', 'mean')).round(3).reset_index()
    tab['params'] = tab['params'].round().astype(int)
    (out/'table.md').write_text(markdown_table(tab) + '\n')
    verdict = 'supported' if fid_u.pvalue < 0.05 else 'not supported'
    (out/'claims.md').write_text(
        f"Searched beats matched random (FID, one-sided Mann-Whitney U, {len(searched)} searched vs {len(random)} random): "
        f"U = {fid_u.statistic:.0f}, p = {fid_u.pvalue:.3g}: {verdict}. Median FID searched {summary['fid_searched_median']:.3g}, "
        f"random {summary['fid_random_median']:.3g}. Rank of each searched genotype among its 6 (1 = best): {ranks}. "
        f"Retrain noise floor (one genotype, {len(floor)} seeds): FID std {summary['noise_floor_fid_std']:.3g}.\n")
    print((out/'table.md').read_text(), (out/'claims.md').read_text(), sep='\n')
    if copy_to:
        copy_to.mkdir(parents=True, exist_ok=True)
        for f in ('retrains.csv', 'searches.csv', 'summary.json', 'table.md', 'claims.md'): shutil.copy(out/f, copy_to/f)
        for d in sorted((out/'search').glob('*/seed*')):
            dst = copy_to/'search'/d.parent.name/d.name; dst.mkdir(parents=True, exist_ok=True)
            for f in ('search.csv', 'alphas.json', 'genotype.json', 'metrics.json'): shutil.copy(d/f, dst/f)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('stage', choices=('retrain-spec', 'compose-spec', 'summarise'))
    ap.add_argument('out', type=Path, help='the replication folder (the search grid\'s out)')
    ap.add_argument('--copy-to', type=Path, default=None, help='a results folder for the summaries (summarise)')
    a = ap.parse_args()
    dict(retrain_spec=retrain_spec, compose_spec=compose_spec)[a.stage.replace('-', '_')](a.out) if a.stage != 'summarise' else summarise(a.out, a.copy_to)
