"""Time a sparse GAN training step (STU-GAN: d_G = 0.1 explored, d_D = 0.5 static) against a dense step of the same model.

    OMP_NUM_THREADS=1 python bench/bench_sparse_step.py                # DCGAN, 16 px digits, width 1
    OMP_NUM_THREADS=1 python bench/bench_sparse_step.py --width 0.5 --steps 50 --repeats 7
    OMP_NUM_THREADS=1 python bench/bench_sparse_step.py --out bench/results/sparse_step/dcgan_w1.json   # also save the numbers

Both learners run in this one process, in alternating blocks of `--steps` generator steps, timed with the process's
CPU time (`time.process_time`, one thread), so other processes on a shared machine do not count; the ratio is the
median over blocks of each block's sparse time over the dense block beside it. The sparse step is reported without
the topology updates (whose time the mask callback measures), and the update cost separately, per update and
amortised over ΔT. `--clock wall` times wall-clock instead. A third learner adds `SparseStatsCallback` (FLOPs
bookkeeping and a balance-ratio measurement every 10 steps) to show what the reporting costs.
"""
import argparse, json, platform, statistics, sys, time
from pathlib import Path
import torch
from sparse_gan_nb.core import set_seed
from sparse_gan_nb.data import gan_dls
from sparse_gan_nb.models import get_models
from sparse_gan_nb.learner import GANLearner
from sparse_gan_nb.sparse import SparseMaskCallback, SparseStatsCallback, Explore

def build(kind, a):
    set_seed(0)
    G, D = get_models(a.model, nz=a.nz, img_size=a.img_size, nc=1, width=a.width)
    cbs = []
    if kind != 'dense':
        cbs = [SparseMaskCallback('G', a.d_g, schedule=Explore(delta_t=a.delta_t, t_max=a.total, growth='gradient'), opt_policy=a.opt_policy),
               SparseMaskCallback('D', a.d_d)]  # no schedule: static
    if kind == 'report': cbs.append(SparseStatsCallback(br_every=10))
    return GANLearner(gan_dls('digits', bs=a.bs, seed=0, size=a.img_size), G, D, ema=0.999, log_every=10**9, cbs=cbs)

def time_updates(cb, clock):
    "Wrap `cb.update` so that its time is summed, with `clock`, into `cb.bench_update`."
    orig = cb.update
    def timed():
        t0 = clock(); orig(); cb.bench_update[0] += clock() - t0
    object.__setattr__(cb, 'update', timed); object.__setattr__(cb, 'bench_update', [0.])

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', default='dcgan'); p.add_argument('--width', type=float, default=1.)
    p.add_argument('--img-size', type=int, default=16); p.add_argument('--nz', type=int, default=32)
    p.add_argument('--bs', type=int, default=64); p.add_argument('--d-g', type=float, default=0.1)
    p.add_argument('--d-d', type=float, default=0.5); p.add_argument('--delta-t', type=int, default=100)
    p.add_argument('--opt-policy', default='zero_new')
    p.add_argument('--steps', type=int, default=100, help='G steps per timed block')
    p.add_argument('--repeats', type=int, default=5, help='timed blocks per learner')
    p.add_argument('--warmup', type=int, default=10)
    p.add_argument('--clock', default='cpu', choices=('cpu', 'wall'), help='process CPU time or wall-clock time')
    p.add_argument('--target', type=float, default=1.05, help='the most a sparse step (updates amortised) may take, in dense steps')
    p.add_argument('--out', default=None, help='also write the numbers to this JSON file (the sparse-training page reads them)')
    a = p.parse_args(argv)
    a.total = a.warmup + a.steps * a.repeats
    learns = {k: build(k, a) for k in ('dense', 'sparse', 'report')}
    for l in learns.values(): l.fit_iters(a.warmup)
    clock = time.process_time if a.clock == 'cpu' else time.perf_counter
    for k in ('sparse', 'report'): time_updates(learns[k].sparse_g, clock)
    times, n0 = {k: [] for k in learns}, len(learns['sparse'].sparse_g.updates)
    for r in range(a.repeats):
        for k, l in learns.items():
            u0 = l.sparse_g.bench_update[0] if k == 'sparse' else 0.
            t0 = clock(); l.fit_iters(l.g_iter + a.steps); dt = clock() - t0
            if k == 'sparse': dt -= l.sparse_g.bench_update[0] - u0  # the updates are reported apart
            times[k].append(dt / a.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = {k: statistics.median(s / d for s, d in zip(times[k], times['dense'])) for k in times}
    cb = learns['sparse'].sparse_g
    n_upd = len(cb.updates) - n0
    per_update = cb.bench_update[0] / max(1, n_upd)
    print(f'torch {torch.__version__}, threads {torch.get_num_threads()}, {a.clock} clock, {a.model} width {a.width}, {a.img_size} px, bs {a.bs}, '
          f'd_G {a.d_g} (explored, ΔT {a.delta_t}), d_D {a.d_d}; {a.repeats} blocks of {a.steps} G steps')
    print(f'dense step             {1e3 * med["dense"]:8.2f} ms')
    print(f'sparse step            {1e3 * med["sparse"]:8.2f} ms   ratio {ratio["sparse"]:.3f}  (updates excluded)')
    print(f'topology update        {1e3 * per_update:8.2f} ms   per update ({n_upd} timed); amortised over ΔT: '
          f'{1e3 * per_update / a.delta_t:.3f} ms/step = {per_update / a.delta_t / med["dense"]:.3f} of a dense step')
    total = ratio["sparse"] + per_update / a.delta_t / med["dense"]
    print(f'sparse + update        ratio {total:.3f}   (target <= {a.target}: {"met" if total <= a.target else "NOT met"})')
    print(f'sparse + reporting     {1e3 * med["report"]:8.2f} ms   ratio {ratio["report"]:.3f}  (SparseStatsCallback, BR every 10; updates included)')
    print('per-block ms:', {k: [round(1e3 * t, 1) for t in v] for k, v in times.items()})
    if a.out:
        from sparse_gan_nb.core import atomic_write_json
        atomic_write_json(a.out, dict(command='OMP_NUM_THREADS=1 python bench/bench_sparse_step.py ' + ' '.join(sys.argv[1:] if argv is None else argv),
                                      args=vars(a), torch=torch.__version__, threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine(),
                                      dense_ms=1e3 * med['dense'], sparse_ms=1e3 * med['sparse'], report_ms=1e3 * med['report'],
                                      ratio=ratio['sparse'], ratio_report=ratio['report'], update_ms=1e3 * per_update, updates_timed=n_upd,
                                      amortised=per_update / a.delta_t / med['dense'], blocks_ms={k: [1e3 * t for t in v] for k, v in times.items()}))
    return med

if __name__ == '__main__': main()
