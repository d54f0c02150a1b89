"""Dense vs sparse generator inference on this CPU, side by side in one process.

    python bench/bench_sparse_inference.py                      # full run, writes bench/results/sparse_inference/
    python bench/bench_sparse_inference.py --quick --out /tmp/x # a smoke-sized run

Three tables, each a CSV in the output folder, and `meta.json` (machine, versions, command, wall time):

- `kernels.csv`: one layer of each type our generators have (linear, a transposed conv on a 1x1 input, stride-2
  transposed convs, a 3x3 conv), random masks at each density, batch 1 and 64, one thread: the dense layer vs the
  library's sparse formulation with each candidate kernel (torch CSR, torch BSR, scipy.sparse, sparse-dot-mkl when
  installed) and with a dense product in the same formulation. The crossover density per layer type comes from here.
- `generators.csv`: DCGAN 16 px, DCGAN 32 px and SNGAN-32 generators with ERK masks at each G density, a DGL narrow
  student (width 0.5, dense) and narrow-and-sparse students: the dense generator's forward vs the same generator after
  `sparsify` (per-layer choice measured at that batch size) and with every layer forced sparse, at batch 1 and 64,
  with one thread and with all threads.
- `sizes.csv`: the export's size against the dense generator's weights, per generator and density.
"""
import argparse, json, os, platform, sys, time
from pathlib import Path
import torch
from torch import nn
import pandas as pd
from sparse_gan_nb.core import set_seed, atomic_write_json, atomic_write_text
from sparse_gan_nb.models import get_models
from sparse_gan_nb.masks import SparseMasks, random_mask
from sparse_gan_nb.deploy import SPARSE_LAYERS, SPARSE_KERNELS, sparsify, export_state, _state_bytes, best_times

torch.backends.cudnn.enabled = False

def layers(quick):
    "(name, layer, input shape without batch): the layer types of our generators, at their real sizes."
    c = 4 if quick else 1
    return [('linear 128→4096 (SNGAN-32 l1)', nn.Linear(128, 4096 // c), (128,)),
            ('convT 4x4 on 1x1 (DCGAN-32 first)', nn.ConvTranspose2d(100, 256 // c, 4, 1, 0, bias=False), (100, 1, 1)),
            ('convT 4x4 s2, 4→8 px (DCGAN-32)', nn.ConvTranspose2d(256 // c, 128 // c, 4, 2, 1, bias=False), (256 // c, 4, 4)),
            ('convT 4x4 s2, 8→16 px (DCGAN-32)', nn.ConvTranspose2d(128 // c, 64 // c, 4, 2, 1, bias=False), (128 // c, 8, 8)),
            ('conv 3x3, 16 px (SNGAN block)', nn.Conv2d(128 // c, 128 // c, 3, 1, 1), (128 // c, 16, 16))]

def kinds_available():
    out = []
    A = torch.eye(4)
    for k in SPARSE_KERNELS:
        try: SPARSE_KERNELS[k](A)
        except ImportError as e: print(f'kernel {k!r} not measured: {e}', flush=True); continue
        out.append(k)
    return out

@torch.no_grad()
def bench_kernels(densities, batches, kernels, quick):
    rows, g = [], torch.Generator().manual_seed(0)
    torch.set_num_threads(1)
    for name, m, shape in layers(quick):
        w0 = m.weight.detach().clone()
        for d in densities:
            m.weight.copy_(w0 * random_mask(tuple(w0.shape), d, g))
            for bs in batches:
                x = torch.randn(bs, *shape)
                S = {k: SPARSE_LAYERS[type(m)](m, k) for k in kernels}
                t = best_times({'(layer)': lambda: m(x)} | {k: (lambda Sk: lambda: Sk(x))(Sk) for k, Sk in S.items()}, rounds=3)
                dense = t['(layer)']
                for k in kernels:
                    rows.append(dict(layer=name, type=type(m).__name__, density=d, batch=bs, kernel=k, dense_ms=1e3 * dense,
                                     sparse_ms=1e3 * t[k], speedup=dense / t[k], max_abs_err=(S[k](x) - m(x)).abs().max().item()))
                print(f"{name:36s} d={d:<5} b={bs:<3} dense {1e3*dense:8.3f} ms  " +
                      '  '.join(f"{r['kernel']} {r['speedup']:.2f}x" for r in rows[-len(kernels):]), flush=True)
    return rows

GENERATORS = {'dcgan16': dict(name='dcgan', img_size=16), 'dcgan32': dict(name='dcgan', img_size=32),
              'sngan32': dict(name='sngan', img_size=32)}

def make_generator(key, density, width=1., seed=0):
    "A fresh generator with ERK masks at `density` (None: dense), in eval mode."
    set_seed(seed)
    G, _ = get_models(nc=3, width=width, **GENERATORS[key])
    if density is not None: SparseMasks(G, density, 'erk', seed=seed)
    return G.eval()

def inputs(G, bs):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(bs, G.nz, generator=g),)

def _layer_timer(fns): return best_times(fns, rounds=3)

@torch.no_grad()
def bench_generators(cases, batches, threads, quick, best):
    rows = []
    for key, width, d in cases:
        for nt in threads:
            torch.set_num_threads(nt)
            for bs in batches:
                G = make_generator(key, d, width)
                x = inputs(G, bs)
                out = G(*x)
                Gs = sparsify(make_generator(key, d, width), batch_size=bs, inputs=x, timer=_layer_timer)
                err = (Gs(*x) - out).abs().max().item()
                Gf = sparsify(make_generator(key, d, width), choose='sparse', inputs=x)
                Gb = sparsify(make_generator(key, d, width), batch_size=bs, inputs=x, kernel=best, timer=_layer_timer)
                Gt = sparsify(make_generator(key, None, width), batch_size=bs, inputs=x, kernel='dense', timer=_layer_timer)
                nets = dict(full=make_generator(key, None), dense=G, sparse=Gs, forced=Gf, best=Gb, tuned=Gt)
                t = best_times({k: (lambda M: lambda: M(*x))(M) for k, M in nets.items()}, budget=20.)
                t_ref, t_dense, t_sparse, t_forced, t_best, t_tuned = (t[k] for k in nets)
                rep = Gs.sparse_report
                rows.append(dict(generator=key, width=width, density=1. if d is None else d, batch=bs, threads=nt,
                                 full_dense_ms=1e3 * t_ref, dense_ms=1e3 * t_dense, sparse_ms=1e3 * t_sparse, forced_sparse_ms=1e3 * t_forced,
                                 best_kernels_ms=1e3 * t_best, tuned_dense_ms=1e3 * t_tuned,
                                 speedup=t_dense / t_sparse, speedup_vs_full=t_ref / t_sparse, forced_speedup=t_dense / t_forced,
                                 best_speedup=t_dense / t_best, speedup_vs_tuned_dense=t_tuned / min(t_sparse, t_best),
                                 best_kernels=' '.join(sorted({r['kernel'] for r in Gb.sparse_report.values() if r['choice'] == 'sparse'})),
                                 sparse_layers=sum(r['choice'] == 'sparse' for r in rep.values()), layers=len(rep),
                                 max_abs_err=err))
                r = rows[-1]
                print(f"{key} w={width} d={r['density']:<5} b={bs:<3} t={nt}: dense {r['dense_ms']:8.2f} ms  sparse {r['sparse_ms']:8.2f} ms "
                      f"({r['speedup']:.2f}x, {r['sparse_layers']}/{r['layers']} layers sparse; all forced sparse {r['forced_speedup']:.2f}x; "
                      f"best kernels {r['best_speedup']:.2f}x ({r['best_kernels']}); vs tuned dense {r['speedup_vs_tuned_dense']:.2f}x; "
                      f"vs full-width dense {r['speedup_vs_full']:.2f}x)", flush=True)
    return rows

def bench_sizes(keys, densities):
    rows = []
    for key in keys:
        for d in densities:
            G = make_generator(key, d)
            st = export_state(G)
            dense = st['dense'] | {k: torch.zeros(v['shape']) for k, v in st['sparse'].items()}
            rows.append(dict(generator=key, density=d, export_bytes=_state_bytes(st), dense_bytes=_state_bytes(dense),
                             sparse_layers=len(st['sparse'])))
            rows[-1]['ratio'] = rows[-1]['export_bytes'] / rows[-1]['dense_bytes']
    return rows

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='bench/results/sparse_inference')
    p.add_argument('--quick', action='store_true', help='small layers, two densities, batch 1 and 8: checks the script runs')
    p.add_argument('--parts', default='kernels,generators,sizes', help='which tables to (re)measure; the others are kept')
    p.add_argument('--batches', default=None, help='comma-separated batch sizes (default 1,64)')
    p.add_argument('--threads', default=None, help="comma-separated thread counts (default 1 and all cores)")
    p.add_argument('--generators', default=None, help="comma-separated subset of the generators (and 'students'); "
                   "their rows replace the same rows of an existing generators.csv")
    a = p.parse_args(argv)
    t0 = time.time()
    dens = (0.05, 0.5) if a.quick else (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    gdens = (0.05, 0.5) if a.quick else (0.02, 0.05, 0.1, 0.2, 0.5)
    batches = tuple(map(int, a.batches.split(','))) if a.batches else (1, 8) if a.quick else (1, 64)
    threads = tuple(map(int, a.threads.split(','))) if a.threads else (1,) if a.quick else tuple(sorted({1, os.cpu_count()}))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    parts = set(a.parts.split(','))
    kernels = kinds_available()
    if 'kernels' in parts:
        k = pd.DataFrame(bench_kernels(dens, batches, kernels, a.quick))
        atomic_write_text(out/'kernels.csv', k.to_csv(index=False))
    keys = ('dcgan16',) if a.quick else tuple(GENERATORS)
    chosen = set(a.generators.split(',')) if a.generators else set(keys) | {'students'}
    cases = [(key, 1., d) for key in keys if key in chosen for d in gdens]
    if 'students' in chosen: cases += [('dcgan32', .5, None)] + [('dcgan32', .5, d) for d in ((0.1,) if a.quick else (0.05, 0.1, 0.2))]
    best = tuple(k for k in kernels if k not in ('dense', 'torch_bsr'))  # BSR is the slowest kernel on every layer of kernels.csv
    if 'generators' in parts:
        gen = pd.DataFrame(bench_generators(cases, batches, threads, a.quick, best))
        if a.generators and (out/'generators.csv').exists():
            key = ['generator', 'width', 'density', 'batch', 'threads']
            old = pd.read_csv(out/'generators.csv')
            gen = pd.concat([old[~old.set_index(key).index.isin(gen.set_index(key).index)], gen], ignore_index=True)
        atomic_write_text(out/'generators.csv', gen.to_csv(index=False))
    if 'sizes' in parts:
        s = pd.DataFrame(bench_sizes(keys, gdens))
        atomic_write_text(out/'sizes.csv', s.to_csv(index=False))
    import scipy
    vers = dict(torch=torch.__version__, scipy=scipy.__version__, python=platform.python_version())
    try:
        import sparse_dot_mkl; vers['sparse_dot_mkl'] = sparse_dot_mkl.__version__
    except ImportError: pass
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor()) \
        if os.path.exists('/proc/cpuinfo') else platform.processor()
    old = json.loads((out/'meta.json').read_text()) if (out/'meta.json').exists() else {}
    wall = dict(old.get('wall_s_by_part', {})) if isinstance(old.get('wall_s_by_part'), dict) else {}
    part = a.parts + ''.join(f' {k}={v}' for k, v in (('generators', a.generators), ('batches', a.batches), ('threads', a.threads)) if v)
    wall[part] = round(time.time() - t0, 1)
    cmds = dict(old.get('commands', {})) if isinstance(old.get('commands'), dict) else {}
    cmds[part] = 'python ' + ' '.join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    meta = dict(commands=cmds, wall_s_by_part=wall, cpu=cpu,
                cores=os.cpu_count(), threads=list(threads), versions=vers, kernels=kernels,
                torch_capability=torch.backends.cpu.get_cpu_capability(), mkl=torch.backends.mkl.is_available(),
                date=time.strftime('%Y-%m-%d'), quick=a.quick)
    atomic_write_json(out/'meta.json', meta)
    print(f"wrote {out} in {wall[part]} s")

if __name__ == '__main__': main()
