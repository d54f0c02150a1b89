"""Real generation time and memory of narrow DGL students against their teacher, next to the MAC ratios.

For each generator configuration, the teacher (width 1), students at width 1/2 and 1/4, and a *masked* full-width
generator whose weights are zeroed at the 1/2-width student's parameter ratio (what masked sparse training gives
at the same parameter count) generate batches of 1 and 64 images in eval mode under `torch.inference_mode`.
Each measurement runs in a fresh subprocess: the median time per batch over repeated calls after a warm-up, and the
memory the generation needs on top of the loaded model (CPU: the peak of the bytes glibc's malloc has handed out,
sampled before and after every module's forward; GPU: the peak of `torch.cuda.max_memory_allocated` above the
model's own). The script prints a markdown table with the ratios to the
teacher and writes it (and a CSV) under --out.

    OMP_NUM_THREADS=1 python bench/bench_student_speed.py                  # CPU, 1 thread
    python bench/bench_student_speed.py --device cuda --out runs/bench_student_speed_gpu
"""
import argparse, json, os, platform, subprocess, sys, time
from pathlib import Path
os.environ.setdefault('OMP_NUM_THREADS', '1')

CONFIGS = {  # name: get_models arguments of the teacher
    'dcgan16': dict(name='dcgan', nz=32, img_size=16, nc=3),  # the replication's teacher (stacked digits)
    'dcgan64': dict(name='dcgan', nz=100, img_size=64, nc=3),
    'sngan32': dict(name='sngan', nz=128, img_size=32, nc=3),
}

def _heap_mb():
    "A function that returns the bytes glibc's malloc has handed out and not freed (heap + mmapped chunks), in MB."
    import ctypes
    class MI(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]
    libc = ctypes.CDLL('libc.so.6'); libc.mallinfo2.restype = MI
    def used(): m = libc.mallinfo2(); return (m.uordblks + m.hblkhd) / 2**20
    return used

def _cpu_peak(G, z) -> float:
    "Peak memory in use during one forward pass above the level before it, sampled before and after every module."
    used = _heap_mb(); base = used(); peak = [base]
    hook = lambda *_: peak.append(used())
    hs = [h for m in G.modules() for h in (m.register_forward_pre_hook(hook), m.register_forward_hook(hook))]
    try: G(z)
    finally:
        for h in hs: h.remove()
    return max(peak) - base

def measure(cfg:dict, width:float, bs:int, device:str, threads:int, min_time:float, masked:float|None=None) -> dict:
    "Time and memory of generating one batch; run in a fresh process (see `main`)."
    import torch
    from sparse_gan_nb.models import get_models, count_params, count_macs
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    kw = {k: v for k, v in cfg.items() if k != 'name'}
    G = get_models(cfg['name'], width=width, **kw)[0].eval()
    params, macs = count_params(G), count_macs(G, torch.randn(1, G.nz))
    if masked is not None:  # zero weights at random to the given density: the dense kernels do the same work
        with torch.no_grad():
            for m in G.modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)): m.weight.mul_(torch.rand_like(m.weight) < masked)
    G = G.to(device)
    z = torch.randn(bs, G.nz, device=device)
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    with torch.inference_mode():
        if device.startswith('cuda'): torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
        for _ in range(3): G(z)
        sync()
        times, t_end = [], time.perf_counter() + min_time
        while time.perf_counter() < t_end or len(times) < 10:
            t = time.perf_counter(); G(z); sync(); times.append(time.perf_counter() - t)
        if device.startswith('cuda'): mem = (torch.cuda.max_memory_allocated() - base) / 2**20
        else: mem = _cpu_peak(G, z)
    times.sort()
    return dict(params=params, macs=macs, ms=1e3 * times[len(times) // 2], ms_min=1e3 * times[0], calls=len(times), mem_mb=mem,
                weights_mb=params * 4 / 2**20)

def run_one(args:dict) -> dict:
    "Run `measure` in a fresh Python process and return its result."
    code = f'import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_student_speed as b; print("RESULT", json.dumps(b.measure(**json.loads(sys.argv[1]))))'
    r = subprocess.run([sys.executable, '-c', code, json.dumps(args)], capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(args['threads'])))
    if r.returncode: raise RuntimeError(f'measurement {args} failed:\n{r.stderr[-3000:]}')
    return json.loads(next(l for l in r.stdout.splitlines() if l.startswith('RESULT'))[7:])

def main(argv=None):
    t0 = time.time()
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--configs', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument('--widths', type=float, nargs='+', default=[1., .5, .25])
    p.add_argument('--bs', type=int, nargs='+', default=[1, 64])
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=int(os.environ.get('OMP_NUM_THREADS', 1)), help='torch CPU threads')
    p.add_argument('--min-time', type=float, default=1., help='seconds of timed calls per measurement (at least 10 calls)')
    p.add_argument('--out', default=None, help='folder for the table (default runs/bench_student_speed[_cuda])')
    a = p.parse_args(argv)
    import pandas as pd, torch
    from sparse_gan_nb.experiment import markdown_table
    dev_name = torch.cuda.get_device_name(0) if a.device.startswith('cuda') else (platform.processor() or platform.machine())
    out = Path(a.out or ('runs/bench_student_speed' + ('_cuda' if a.device.startswith('cuda') else '')))
    rows = []
    for c in a.configs:
        variants = [(f'width {w:g}', w, None) for w in a.widths]
        for bs in a.bs:
            res = {}
            for label, w, masked in variants:
                res[label] = run_one(dict(cfg=CONFIGS[c], width=w, bs=bs, device=a.device, threads=a.threads, min_time=a.min_time, masked=masked))
                if label == 'width 0.5' and 'width 1' in res:  # masked full width at the 1/2 student's parameter ratio
                    d = res[label]['params'] / res['width 1']['params']
                    res[f'masked, density {d:.2f}'] = run_one(dict(cfg=CONFIGS[c], width=1., bs=bs, device=a.device, threads=a.threads,
                                                                   min_time=a.min_time, masked=d))
            T = res['width 1']
            for label, r in res.items():
                masked = label.startswith('masked')
                rows.append({'G': c, 'bs': bs, 'generator': label,
                             'params': f"{r['params'] * (d if masked else 1):,.0f} ({r['params'] * (d if masked else 1) / T['params']:.2f}x)",
                             'MACs': f"{r['macs'] / 1e6:.1f}M ({r['macs'] / T['macs']:.2f}x)" + (' (dense kernels)' if masked else ''),
                             'ms / batch': round(r['ms'], 3), 'time ratio': round(r['ms'] / T['ms'], 2), 'speed-up': round(T['ms'] / r['ms'], 2),
                             'gen. memory MB': round(r['mem_mb'], 2), 'memory ratio': round(r['mem_mb'] / T['mem_mb'], 2),
                             'weights MB': round(r['weights_mb'], 2), 'mac_ratio': round(r['macs'] / T['macs'], 3)})
            print(f'{c} bs {bs}: ' + ', '.join(f"{k} {v['ms']:.3f} ms" for k, v in res.items()), flush=True)
    df = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True); df.to_csv(out/'speed.csv', index=False)
    cmd = ('OMP_NUM_THREADS=1 ' if a.device == 'cpu' else '') + 'python bench/bench_student_speed.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    md = '\n'.join([f'Command: `{cmd}`', '', f'Device: {a.device} ({dev_name}), {a.threads} torch thread(s), torch {torch.__version__}; '
                    f'median of >= 10 calls over {a.min_time:g} s per row, each row in a fresh process. "gen. memory" is the memory the '
                    f'generation needs on top of the loaded model ({"peak CUDA allocation" if a.device.startswith("cuda") else "peak of the bytes malloc has in use, sampled at every module boundary"}).',
                    '', markdown_table(df), '', f'wall time {time.time() - t0:.0f} s'])
    (out/'speed.md').write_text(md + '\n')
    (out/'command.txt').write_text(f'{cmd}\n# {a.device} ({dev_name}), {a.threads} torch thread(s), torch {torch.__version__}; wall time {time.time() - t0:.0f} s\n')
    (out/'summary.md').write_text(summary(df) + '\n')
    print(md); print(summary(df))

def summary(df) -> str:
    "Per generator and batch size: each student's time ratio next to its MAC ratio, and the masked generator's time ratio."
    lines = []
    for (c, bs), g in df.groupby(['G', 'bs'], sort=False):
        st = g[g.generator.str.startswith('width') & (g.generator != 'width 1')]
        mk = g[g.generator.str.startswith('masked')]
        lines.append(f'- {c}, batch {bs}: ' + '; '.join(f"{r.generator} takes {r['time ratio']:.2f}x the time for {r.mac_ratio:.2f}x the MACs"
                                                        for _, r in st.iterrows())
                     + ''.join(f"; the {r.generator} generator takes {r['time ratio']:.2f}x" for _, r in mk.iterrows()) + '.')
    m = df[df.generator.str.startswith('masked')]['time ratio']
    lines.append(f'- Masked generators, with as few nonzero weights as the 1/2 student, take {m.min():.2f}-{m.max():.2f}x the time of '
                 'their dense generator: with dense kernels, masked sparsity saves nothing at inference, and a narrow student does.')
    return '\n'.join(lines)

if __name__ == '__main__': main()
