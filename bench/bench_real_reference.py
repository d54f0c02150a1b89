"""What real data scores: held-out real stacked digits evaluated like a generator's samples, for scale beside the
FIDs of the results pages.

    OMP_NUM_THREADS=1 python bench/bench_real_reference.py                  # writes bench/results/real_reference/stacked_digits.json

The `Evaluator` the experiments use (2000 samples against the whole training split in the stacked-digits classifier's
features: FID, IS, precision/recall, modes) scores the first 2000 images of the held-out split, and the file records
the dataset's sizes beside the scores, read from the data and the extractor.
"""
import argparse, sys
import torch
from sparse_gan_nb.core import atomic_write_json
from sparse_gan_nb.data import get_data
from sparse_gan_nb.evaluate import Evaluator

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=2000, help='held-out images scored')
    p.add_argument('--metrics', default='fid,is,pr,modes')
    p.add_argument('--out', default='bench/results/real_reference/stacked_digits.json')
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    ev = Evaluator('stacked_digits', n_samples=a.n, metrics=tuple(a.metrics.split(',')))
    held_out, _ = get_data('stacked_digits', split='valid')
    scores = ev.evaluate_images(held_out[:a.n])
    out = dict(command=' '.join(['OMP_NUM_THREADS=1 python bench/bench_real_reference.py', *(sys.argv[1:] if argv is None else argv)]),
               dataset='stacked_digits', img_size=ev.shape[-1], channels=ev.shape[0], n_train=ev.n_ref, n_valid=len(held_out),
               n_modes=ev.extractor.n_classes, n_scored=a.n, torch=torch.__version__, metrics=scores)
    atomic_write_json(a.out, out)
    print(out)
    return out

if __name__ == '__main__': main()
