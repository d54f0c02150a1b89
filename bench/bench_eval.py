"""Evaluator overhead: features + metrics of N generated digits through `Evaluator.evaluate_images`, against the
same computation with the extractor and the metric functions called directly, in one process, interleaved.

    python bench/bench_eval.py              # 10,000 samples, 7 interleaved repeats
    python bench/bench_eval.py --n 2000 --repeats 3

The generated images come from an untrained DCGAN at 16 px (what the evaluator sees early in a run). Both sides use
the same cached reference (real features, mean, covariance, k-NN radii), since evaluating a run computes only the
generated side. The direct side calls: the digits classifier (a plain module call per batch, under no_grad),
torch-fidelity's FID statistics and distance, its Inception Score and its precision/recall, and the KID and
density/coverage kernels of `sparse_gan_nb.metrics` (the library has no density/coverage, and its KID is the
slower equivalent timed separately at the end). Target: ours / direct <= 1.10. On a busy machine single runs vary
by 2x; the fastest runs are the least disturbed, so their ratio is printed next to the medians'.
"""
import argparse, os, statistics, sys, tempfile, time
import torch

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=10_000, help='generated samples')
    p.add_argument('--repeats', type=int, default=7, help='interleaved repeats of each side')
    p.add_argument('--cache', default=None, help='cache folder (default: a fresh temporary one)')
    p.add_argument('--skip-tf-kid', action='store_true', help="don't time torch-fidelity's own KID")
    a = p.parse_args(argv)
    os.environ.setdefault('SPARSE_GAN_NB_CACHE', a.cache or tempfile.mkdtemp())

    from sparse_gan_nb.core import set_seed
    from sparse_gan_nb.models import get_models
    from sparse_gan_nb.evaluate import Evaluator, sample_generator
    from sparse_gan_nb.metrics import kid, density_coverage
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    ev = Evaluator('digits', n_samples=a.n)  # builds (or loads) the classifier and the reference
    set_seed(0)
    G, _ = get_models('dcgan', nz=32, img_size=16, nc=1)
    x = sample_generator(G, a.n, seed=0)
    clf, ref = ev.extractor, ev.ref

    def ours(): return ev.evaluate_images(x)

    @torch.no_grad()
    def direct():
        clf.eval()
        outs = [clf.features_logits(x[i:i+500]) for i in range(0, len(x), 500)]
        f, l = torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
        fid = fid_statistics_to_metric(fid_features_to_statistics(f.double()), dict(mu=ref.mu, sigma=ref.sigma), False)
        isc = isc_features_to_metric(l, splits=10, shuffle=True, rng_seed=2020)
        k = kid(f, ref.features)
        pr = prc_features_to_metric(f, ref.features, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False, verbose=False)
        dc = density_coverage(f, ref.features, k=5, real_radii=ref.radii)
        return fid, isc, k, pr, dc

    r_ours, r_direct = ours(), direct()  # warm-up, and a check that both compute the same numbers
    assert abs(r_ours['fid'] - r_direct[0]['frechet_inception_distance']) < 1e-6 * max(1, r_ours['fid']), (r_ours['fid'], r_direct[0])
    assert abs(r_ours['precision'] - r_direct[3]['precision']) < 1e-9 and abs(r_ours['coverage'] - r_direct[4][1]) < 1e-9

    t_ours, t_direct = [], []
    for r in range(a.repeats):
        for side in ((ours, t_ours), (direct, t_direct))[::1 if r % 2 == 0 else -1]:  # alternate which goes first
            t0 = time.perf_counter(); side[0](); side[1].append(time.perf_counter() - t0)
    mo, md = statistics.median(t_ours), statistics.median(t_direct)
    lo, ld = min(t_ours), min(t_direct)
    print(f'n={a.n} generated digits (untrained DCGAN, 16 px) against {len(ref.features)} training digits; '
          f'extractor {clf.name}; metrics {ev.metrics}; torch threads {torch.get_num_threads()}')
    print(f'ours   (Evaluator.evaluate_images): median {mo:.3f} s  runs {[round(t, 3) for t in t_ours]}')
    print(f'direct (extractor + metric calls):  median {md:.3f} s  runs {[round(t, 3) for t in t_direct]}')
    print(f'ratio ours/direct = {mo/md:.3f} (medians), {lo/ld:.3f} (fastest runs); per pair {[round(o/d, 3) for o, d in zip(t_ours, t_direct)]}')
    if not a.skip_tf_kid:
        f = clf.extract(x)[0]
        t0 = time.perf_counter(); kid_features_to_metric(f, ref.features, verbose=False); t_tf = time.perf_counter() - t0
        t0 = time.perf_counter(); kid(f, ref.features); t_k = time.perf_counter() - t0
        print(f"KID alone: torch-fidelity's kid_features_to_metric {t_tf:.3f} s, ours {t_k:.3f} s (same subsets, same estimator)")
    return mo/md

if __name__ == '__main__': main(sys.argv[1:])
