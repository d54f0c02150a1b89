"""One run on 1 and on 2 processes (torchrun, gloo on CPU), side by side: wall and training time, and how far apart
the two runs end (losses in history.csv, the weights of G and D in the final checkpoint).

    OMP_NUM_THREADS=1 python bench/bench_scale.py --out bench/results/scale

Each case is one experiment notebook run twice by `sgn run`, once with `--nproc 1` and once with `--nproc 2`, same
parameters and seed. The batch size is the global batch, so on 2 processes each trains on half of it. One JSON per
case goes to --out, with the commands, the machine and every number; the "Running at scale" page reads them.
"""
import argparse, json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path
import pandas as pd, torch

CASES = {
    'mlp_ring8': dict(notebook='stu_gan', what='STU-GAN (sparse G at 10 %, explored), MLP on the 8-Gaussian ring: no BatchNorm',
                      params=dict(dataset='ring8', model='mlp', width=1.0, d_width=1.0, nz=2, bs=512, n_iter=1000, delta_t=50,
                                  eval_n=2000, log_every=10, sample_every=1000, ckpt_every=1000, device='cpu', seed=0)),
    'dcgan_digits': dict(notebook='dense_baseline', what='dense DCGAN on 16-pixel digits: BatchNorm in G and D',
                         params=dict(dataset='digits', model='dcgan', bs=64, n_iter=300, eval_n=1000, log_every=10,
                                     sample_every=300, ckpt_every=300, device='cpu', seed=0)),
}

def run(case:dict, nproc:int, folder:Path) -> dict:
    args = ['run', case['notebook'], str(folder), '--nproc', str(nproc)] + [x for k, v in case['params'].items() for x in ('-p', k, str(v))]
    t0 = time.time()
    p = subprocess.run([sys.executable, '-m', 'sparse_gan_nb.cli', *args], capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    wall = time.time() - t0
    if p.returncode: sys.exit(f'sgn {" ".join(args)} failed:\n{p.stderr[-3000:]}')
    return dict(command='sgn ' + ' '.join(args).replace(str(folder), 'RUN'), wall_s=round(wall, 2),
                metrics=json.loads((folder/'metrics.json').read_text())['metrics'], history=pd.read_csv(folder/'history.csv'))

def control(n_iter:int=1000) -> dict:
    "The same kind of drift without a second process: one process, the dense MLP pair on ring8, run twice, the second time with one weight of G nudged by 1e-7."
    from sparse_gan_nb.data import gan_dls
    from sparse_gan_nb.models import get_models
    from sparse_gan_nb.learner import GANLearner
    from sparse_gan_nb.core import set_seed
    def one(eps):
        set_seed(0); G, D = get_models('mlp', nz=2, width=1.0)
        with torch.no_grad(): next(G.parameters()).view(-1)[0] += eps
        L = GANLearner(gan_dls('ring8', bs=512, seed=0), G, D, lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), ema=None, log_every=10)
        L.fit_iters(n_iter)
        return dict(iter=[r['iter'] for r in L.history.rows], loss_d=[r['loss_d'] for r in L.history.rows], loss_g=[r['loss_g'] for r in L.history.rows])
    return dict(what='one process, dense MLP on ring8 (bs 512, Adam 2e-4, seed 0), run twice: the second time one weight of G is 1e-7 larger',
                curves={'1': one(0.), '2': one(1e-7)})

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='bench/results/scale')
    p.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
    a = p.parse_args(argv)
    from sparse_gan_nb.core import read_checkpoint
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out/'control.json').write_text(json.dumps(control(), indent=1))
    for name in a.cases:
        case, tmp = CASES[name], Path(tempfile.mkdtemp(prefix='sgn-scale-'))
        res = {n: run(case, n, tmp/f'p{n}') for n in (1, 2)}
        cks = {n: read_checkpoint(tmp/f'p{n}'/'checkpoint.safetensors') for n in (1, 2)}
        h1, h2 = res[1]['history'], res[2]['history']
        losses = [c for c in ('loss_d', 'loss_g') if c in h1]
        wdiff = {net: max((cks[1][net][k].double() - cks[2][net][k].double()).abs().max().item() for k in cks[1][net]
                          if 'running' not in k and 'num_batches' not in k) for net in ('G', 'D')}
        m1, m2 = res[1]['metrics'], res[2]['metrics']
        doc = dict(case=name, what=case['what'], notebook=case['notebook'], params=case['params'],
                   commands={n: res[n]['command'] for n in (1, 2)},
                   wall_s={n: res[n]['wall_s'] for n in (1, 2)}, train_time_s={n: res[n]['metrics']['train_time_s'] for n in (1, 2)},
                   max_loss_diff=float(max((h1[c] - h2[c]).abs().max() for c in losses)), max_weight_diff=wdiff,
                   fid={1: m1.get('fid'), 2: m2.get('fid')}, eval_n=case['params']['eval_n'],
                   curves={n: dict(iter=res[n]['history']['iter'].tolist(), **{c: res[n]['history'][c].tolist() for c in losses}) for n in (1, 2)},
                   machine=dict(cpus=os.cpu_count(), cpu=platform.processor() or platform.machine(), torch=torch.__version__,
                                python=platform.python_version(), gpu=None, when=time.strftime('%Y-%m-%d %H:%M')))
        (out/f'{name}.json').write_text(json.dumps(doc, indent=1))
        print(f"{name}: wall {doc['wall_s']} s, training {doc['train_time_s']} s, max |Δloss| {doc['max_loss_diff']:.3g}, "
              f"max |Δw| G {wdiff['G']:.3g} D {wdiff['D']:.3g}, FID {doc['fid']}")

if __name__ == '__main__': main()
