"""Oracle tests of the metrics: each number is checked against an independent computation or a closed form.

Tolerances (and why):
- FID of given statistics vs the closed form for commuting covariances: relative 1e-9 (float64 rounding only);
  vs scipy.linalg.sqrtm for arbitrary covariances: relative 1e-7.
- FID of 100k samples per side vs the closed form of their Gaussians (d = 8): relative 3 % (the sample bias and
  noise; observed about 0.2-0.5 %).
- FID of a set with itself: absolute 1e-8.
- IS: 1 exactly (1e-9) for collapsed or unconfident logits; K within 0.5 % for balanced confident logits.
- KID, one subset = all samples, vs the unbiased MMD^2 written out: 1e-9; vs torch-fidelity on the same subsets: 1e-6.
- Precision/recall and density/coverage vs a NumPy brute force of their definitions: 1e-6 (counts agree exactly).
- Identical sets: P = R = 1 and coverage = 1 exactly; density = 1 within 1e-3.
- Two samples of one distribution (N = M = 2000): density within 0.1 of 1; coverage within 0.015 of
  1 - C(N-1,k)/C(N+M-1,k) (about 1 - 2^-5).
- Collapsed generator (one cluster of ten): recall and coverage < 0.15, precision > 0.5.
- Mixtures: a perfect sampler covers all modes, hq within 0.01 of 1 - e^-4.5, KL < 0.02; one mode: 1 mode, KL = log K.
"""
import math, os
import numpy as np
import pytest
import torch

from sparse_gan_nb.metrics import (fid, feature_stats, frechet_distance, inception_score, kid, precision_recall,
                                   density_coverage, expected_coverage, knn_radii, mode_kl, mixture_mode_metrics,
                                   stacked_mode_metrics, _mmd2_by_subsets, _mmd2_by_indicators)


def _gaussians(d=8, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(.5, 2, d), rng.uniform(.5, 2, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    S1, S2 = Q @ np.diag(a) @ Q.T, Q @ np.diag(b) @ Q.T
    closed = ((mu1 - mu2)**2).sum() + ((np.sqrt(a) - np.sqrt(b))**2).sum()
    return rng, mu1, S1, mu2, S2, closed

# ---------------------------------------------------------------- FID
def test_fid_closed_form_exact():
    _, mu1, S1, mu2, S2, closed = _gaussians(16)
    assert frechet_distance(mu1, S1, mu2, S2) == pytest.approx(closed, rel=1e-9)

def test_fid_matches_scipy_sqrtm():
    import scipy.linalg
    rng = np.random.default_rng(1); d = 12
    A, B = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    S1, S2, mu1, mu2 = A @ A.T + np.eye(d), B @ B.T, rng.standard_normal(d), rng.standard_normal(d)
    ref = ((mu1 - mu2)**2).sum() + np.trace(S1 + S2 - 2*scipy.linalg.sqrtm(S1 @ S2).real)
    assert frechet_distance(mu1, S1, mu2, S2) == pytest.approx(ref, rel=1e-7)

def test_fid_from_samples_approaches_closed_form():
    rng, mu1, S1, mu2, S2, closed = _gaussians(8)
    n = 100_000
    x1 = torch.from_numpy(mu1 + rng.standard_normal((n, 8)) @ np.linalg.cholesky(S1).T)
    x2 = torch.from_numpy(mu2 + rng.standard_normal((n, 8)) @ np.linalg.cholesky(S2).T)
    assert fid(x1, x2) == pytest.approx(closed, rel=0.03)

def test_fid_identical_sets_is_zero():
    x = torch.randn(3000, 32)
    assert abs(fid(x, x)) < 1e-8

# ---------------------------------------------------------------- IS
def test_inception_score_oracles():
    K, n = 10, 10_000
    assert inception_score(50*torch.eye(K)[torch.arange(n) % K])[0] == pytest.approx(K, rel=5e-3)
    assert inception_score(50*torch.eye(K)[torch.zeros(n, dtype=torch.long)])[0] == pytest.approx(1, abs=1e-9)
    assert inception_score(torch.zeros(n, K))[0] == pytest.approx(1, abs=1e-9)

# ---------------------------------------------------------------- KID
def _mmd2_unbiased(x, y):
    k = lambda a, b: (a @ b.T / a.shape[1] + 1)**3
    m = len(x); kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - kxx.diag().sum() + kyy.sum() - kyy.diag().sum())/(m*(m - 1)) - 2*kxy.mean()).item()

def test_kid_single_subset_is_unbiased_mmd2():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 6, generator=g, dtype=torch.float64), torch.randn(400, 6, generator=g, dtype=torch.float64) + .2
    assert kid(x, y, subsets=1, subset_size=400)[0] == pytest.approx(_mmd2_unbiased(x, y), abs=1e-9)

def test_kid_matches_torch_fidelity_on_same_subsets():
    from torch_fidelity.metric_kid import kid_features_to_metric
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(500, 16, generator=g), torch.randn(700, 16, generator=g) + .1
    tf = kid_features_to_metric(x, y, kid_subsets=15, kid_subset_size=300, verbose=False)
    ours = kid(x, y, subsets=15, subset_size=300)
    assert ours == pytest.approx((tf['kernel_inception_distance_mean'], tf['kernel_inception_distance_std']), abs=1e-6)

def test_kid_both_ways_agree_and_same_distribution_is_zero():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(300, 4, generator=g, dtype=torch.float64), torch.randn(350, 4, generator=g, dtype=torch.float64)
    rng = np.random.RandomState(0)
    idx = [(rng.choice(300, 100, replace=False), rng.choice(350, 100, replace=False)) for _ in range(6)]
    torch.testing.assert_close(_mmd2_by_subsets(x, y, idx, 100), _mmd2_by_indicators(x, y, idx, 100), rtol=0, atol=1e-10)
    m, s = kid(torch.randn(3000, 8, generator=g), torch.randn(3000, 8, generator=g))
    assert abs(m) < 3*s

# ---------------------------------------------------------------- PR / DC
def _brute(fake, real, k, strict):
    F_, R_ = fake.double().numpy(), real.double().numpy()
    dist = lambda a, b: np.sqrt(((a[:, None] - b[None])**2).sum(-1))
    rr, rf = np.sort(dist(R_, R_), 1)[:, k], np.sort(dist(F_, F_), 1)[:, k]
    inb = (dist(F_, R_) < rr[None]) if strict else (dist(F_, R_) <= rr[None])
    return dict(density=inb.sum()/(k*len(F_)), coverage=inb.any(0).mean(), precision=inb.any(1).mean(),
                recall=(dist(R_, F_) <= rf[None]).any(1).mean())

def test_pr_dc_match_brute_force():
    g = torch.Generator().manual_seed(3)
    fk, rl = torch.randn(300, 5, generator=g) + .5, torch.randn(400, 5, generator=g)
    b5, b3 = _brute(fk, rl, 5, strict=True), _brute(fk, rl, 3, strict=False)
    assert density_coverage(fk, rl) == pytest.approx((b5['density'], b5['coverage']), abs=1e-6)
    assert precision_recall(fk, rl) == pytest.approx((b3['precision'], b3['recall']), abs=1e-6)
    assert density_coverage(fk, rl, real_radii=knn_radii(rl, 5)) == density_coverage(fk, rl)

def test_identical_sets():
    x = torch.randn(2000, 16, generator=torch.Generator().manual_seed(4))
    d, c = density_coverage(x, x)
    assert d == pytest.approx(1, abs=1e-3) and c == 1.
    assert precision_recall(x, x) == (1., 1.)

def test_same_distribution_density_one_coverage_one_minus_two_to_minus_k():
    g = torch.Generator().manual_seed(5)
    X, Y = torch.randn(2000, 16, generator=g), torch.randn(2000, 16, generator=g)
    d, c = density_coverage(Y, X)
    assert d == pytest.approx(1, abs=0.1)
    assert expected_coverage(2000, 2000) == pytest.approx(1 - 2**-5, abs=1e-3)
    assert c == pytest.approx(expected_coverage(2000, 2000), abs=0.015)

def test_collapsed_generator_low_recall_and_coverage():
    g = torch.Generator().manual_seed(6)
    cent = 6*torch.randn(10, 16, generator=g)
    real = cent[torch.arange(3000) % 10] + torch.randn(3000, 16, generator=g)
    coll = cent[torch.zeros(3000, dtype=torch.long)] + torch.randn(3000, 16, generator=g)
    p, r = precision_recall(coll, real); d, c = density_coverage(coll, real)
    assert r < .15 and c < .15 and p > .5
    good = cent[torch.arange(3000) % 10] + torch.randn(3000, 16, generator=g)
    assert fid(coll, real) > 10*fid(good, real)

# ---------------------------------------------------------------- modes
@pytest.mark.parametrize('kind', ['ring8', 'grid25'])
def test_mixture_modes(kind):
    from sparse_gan_nb.data import gaussian_mixture, mixture_centers, MIXTURE_STD
    K = len(mixture_centers(kind))
    perfect = mixture_mode_metrics(gaussian_mixture(kind, 2500, seed=1)[0], kind)
    assert perfect['modes'] == K and perfect['hq'] == pytest.approx(1 - math.exp(-4.5), abs=0.01) and perfect['mode_kl'] < 0.02
    one = mixture_mode_metrics(mixture_centers(kind)[0] + MIXTURE_STD[kind]*torch.randn(2500, 2), kind)
    assert one['modes'] == 1 and one['mode_kl'] == pytest.approx(math.log(K), abs=1e-9)
    far = mixture_mode_metrics(torch.full((10, 2), 100.), kind)
    assert far['hq'] == 0 and far['modes'] == 0 and math.isnan(far['mode_kl'])

def test_mode_kl():
    assert mode_kl(torch.arange(1000).repeat(3), 1000) == pytest.approx(0, abs=1e-12)
    assert mode_kl(torch.zeros(50, dtype=torch.long), 1000) == pytest.approx(math.log(1000))

def test_stacked_modes(sgn_cache):
    from sparse_gan_nb.data import get_data
    from sparse_gan_nb.features import digits_classifier, StackedDigitsReader
    reader = StackedDigitsReader(digits_classifier())
    xs, _ = get_data('stacked_digits', split='valid', n=5000)
    real = stacked_mode_metrics(xs, reader)
    assert real['modes'] > 975 and real['mode_kl'] < 0.3
    coll = stacked_mode_metrics(xs[:1].expand(500, -1, -1, -1), reader)
    assert coll['modes'] == 1 and coll['mode_kl'] == pytest.approx(math.log(1000))

# ---------------------------------------------------------------- bad input
def test_bad_feature_input():
    with pytest.raises(ValueError, match=r'got n=64 samples, need at least 65 .*use n_samples >= 65'):
        fid(torch.randn(64, 64), torch.randn(500, 64))
    with pytest.raises(ValueError, match='they come from different extractors'):
        fid(torch.randn(100, 64), torch.randn(500, 32))
    with pytest.raises(ValueError, match='different extractors'):
        kid(torch.randn(100, 64), torch.randn(500, 32))
    with pytest.raises(ValueError, match='different extractors'):
        precision_recall(torch.randn(100, 64), torch.randn(500, 32))
    with pytest.raises(ValueError, match=r'shaped \(n, d\)'):
        density_coverage(torch.randn(100), torch.randn(500, 32))
    with pytest.raises(ValueError, match='contain nan or inf'):
        fid(torch.full((100, 4), float('nan')), torch.randn(500, 4))
