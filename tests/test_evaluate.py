"""Feature extractors, the Evaluator and its caches, the training callback, `sgn eval`, and bad input.

Tests that need the real TF-Inception weights are skipped, with the message that says which file to put where, when
the file is missing; a randomly initialised stand-in file checks the loading and the input pipeline either way.
"""
import json, os
from pathlib import Path
import pytest
import torch

from sparse_gan_nb import features as feats_mod
from sparse_gan_nb.features import (check_images, classifier_key, digits_classifier, DigitsClassifier, DIGITS_TRAIN,
                                    InceptionFeatures, inception_weights_path, INCEPTION_FILE, get_extractor)
from sparse_gan_nb.evaluate import Evaluator, Reference, EvalCallback, compute_metrics, evaluate_main, sample_generator
from sparse_gan_nb.data import get_data

pytestmark = pytest.mark.usefixtures('sgn_cache')  # a fresh classifier cache (tests/conftest.py)

@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    "TORCH_HOME pointing at an empty folder, and any attempt to download made an error."
    monkeypatch.setenv('TORCH_HOME', str(tmp_path/'torch'))
    def no_download(*a, **k): raise AssertionError('a download was attempted')
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', no_download)
    import torch_fidelity.feature_extractor_inceptionv3 as fe
    monkeypatch.setattr(fe, 'load_state_dict_from_url', no_download)
    return tmp_path/'torch'

# ---------------------------------------------------------------- the digits classifier and its cache
def test_classifier_trained_once_then_loaded(monkeypatch):
    a = digits_classifier()
    assert a.valid_acc > 0.95
    monkeypatch.setattr(feats_mod, 'train_classifier', lambda *a, **k: pytest.fail('retrained instead of loading the cache'))
    b = digits_classifier()
    assert b.from_cache and b.name == a.name and b.valid_acc == a.valid_acc
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))

def test_classifier_key_changes_with_data_and_settings():
    x, y = get_data('digits', split='train')
    arch = DigitsClassifier().arch
    k = classifier_key(x, y, arch, DIGITS_TRAIN)
    x2 = x.clone(); x2[5, 0, 3, 3] += 1e-3
    y2 = y.clone(); y2[0] = (y2[0] + 1) % 10
    assert classifier_key(x2, y, arch, DIGITS_TRAIN) != k
    assert classifier_key(x, y2, arch, DIGITS_TRAIN) != k
    assert classifier_key(x, y, {**arch, 'dim': 32}, DIGITS_TRAIN) != k
    assert classifier_key(x, y, arch, {**DIGITS_TRAIN, 'lr': 1e-3}) != k
    assert classifier_key(x.clone(), y.clone(), dict(arch), dict(DIGITS_TRAIN)) == k

def test_cache_dir_argument_and_env(tmp_path):
    assert feats_mod.cache_dir(tmp_path) == tmp_path
    assert feats_mod.cache_dir() == Path(os.environ['SPARSE_GAN_NB_CACHE'])
    m = digits_classifier(cache=tmp_path/'other')
    assert list((tmp_path/'other'/'classifiers').glob('digits-cnn-*.safetensors')) and not m.from_cache

# ---------------------------------------------------------------- Evaluator and reference cache
def test_reference_is_cached(monkeypatch):
    ev = Evaluator('digits', n_samples=400)
    def boom(*a, **k): raise AssertionError('the reference was recomputed')
    monkeypatch.setattr(Reference, '__init__', boom)
    ev2 = Evaluator('digits', n_samples=400)
    assert ev2.ref_cached and ev2.ref_path == ev.ref_path
    assert torch.equal(ev2.ref.features, ev.ref.features) and (ev2.ref.sigma == ev.ref.sigma).all()
    # another split or size is another entry
    monkeypatch.undo()
    ev3 = Evaluator('digits', split='valid', n_samples=100, metrics=('pr',))
    assert ev3.ref_path != ev.ref_path and not ev3.ref_cached

def test_floor_and_metadata():
    ev = Evaluator('digits')
    xv, _ = get_data('digits', split='valid')
    m = ev.evaluate_images(xv)
    assert set(m) >= {'fid', 'is_mean', 'is_std', 'kid_mean', 'kid_std', 'precision', 'recall', 'density', 'coverage',
                      'n_samples', 'extractor', 'reference_split', 'reference_n'}
    assert (m['n_samples'], m['reference_split'], m['extractor']) == (len(xv), 'train', ev.extractor.name)
    assert m['is_mean'] > 8 and m['precision'] > .8 and m['recall'] > .8
    noise = ev.evaluate_images(torch.rand(len(xv), 1, 16, 16)*2 - 1)
    assert noise['fid'] > 10*m['fid'] and noise['precision'] < m['precision']

def test_generator_seed_and_rng():
    class G_(torch.nn.Module):
        nz, n_classes = 8, 0
        def __init__(self): super().__init__(); self.fc = torch.nn.Linear(8, 256)
        def forward(self, z, y=None): return self.fc(z).tanh().view(-1, 1, 16, 16)
    torch.manual_seed(0); G = G_()
    ev = Evaluator('digits', n_samples=200)
    state = torch.get_rng_state()
    a, b = ev.evaluate_generator(G), ev.evaluate_generator(G)
    assert torch.equal(torch.get_rng_state(), state)  # sampling does not move the global RNG
    assert a['fid'] == b['fid'] and a['n_samples'] == 200
    assert ev.evaluate_generator(G, seed=1)['fid'] != a['fid']

# ---------------------------------------------------------------- bad input
def test_too_few_samples_names_the_minimum():
    with pytest.raises(ValueError, match=r'n_samples=50 is too small for FID on 64-d features .* Use n_samples >= 65'):
        Evaluator('digits', n_samples=50)
    ev = Evaluator('digits', n_samples=100)
    with pytest.raises(ValueError, match='Use n_samples >= 65'):
        ev.evaluate_images(get_data('digits', split='valid')[0][:64])

def test_images_in_wrong_range_or_shape():
    ev = Evaluator('digits', n_samples=100)
    x = get_data('digits', split='valid')[0][:100]
    with pytest.raises(ValueError, match=r'look like \[0, 255\] images'): ev.evaluate_images((x + 1)*127.5)
    with pytest.raises(ValueError, match=r'look like \[0, 1\] images'): ev.evaluate_images((x + 1)/2 + .2)
    with pytest.raises(ValueError, match=r'shaped \(n, c, h, w\)'): ev.evaluate_images(x[:, 0])
    with pytest.raises(ValueError, match='have 3 channels'): ev.evaluate_images(x.expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match='build the Evaluator with size=32'): ev.evaluate_images(torch.zeros(100, 1, 32, 32))
    with pytest.raises(ValueError, match='dtype torch.uint8'): check_images(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r'points must be a float tensor shaped \(n, 2\)'):
        Evaluator('ring8', n_samples=100).evaluate_images(torch.zeros(100, 3))

def test_mismatched_extractors():
    ev, evs = Evaluator('digits', n_samples=100), Evaluator('stacked_digits', n_samples=200, n_ref=500)
    f, l = ev.extractor.extract(get_data('digits', split='valid')[0])
    with pytest.raises(ValueError, match="mismatched extractors: the generated features come from 'digits-cnn-"):
        compute_metrics(f, l, evs.ref, ('fid',), extractor=ev.extractor.name)
    with pytest.raises(ValueError, match='mismatched extractors'):  # no name given: the feature size gives it away
        compute_metrics(f, l, evs.ref, ('fid',))

def test_bad_metric_choices():
    with pytest.raises(ValueError, match="metric 'is' needs logits"): Evaluator('grid25', metrics=('is',))
    with pytest.raises(ValueError, match="metric 'modes' is defined for"): Evaluator('digits', metrics=('modes',))
    with pytest.raises(ValueError, match="unknown metrics='fjd'"): Evaluator('digits', metrics=('fjd',))

# ---------------------------------------------------------------- TF-Inception
def test_missing_inception_weights_message(empty_torch_home):
    hub_file = empty_torch_home/'hub'/'checkpoints'/INCEPTION_FILE
    with pytest.raises(FileNotFoundError) as e: InceptionFeatures()
    msg = str(e.value)
    assert INCEPTION_FILE in msg and str(hub_file) in msg and 'weights_path=' in msg and 'never downloads' in msg
    with pytest.raises(FileNotFoundError, match="not found at '/nowhere/w.pth'"): InceptionFeatures('/nowhere/w.pth')
    with pytest.raises(FileNotFoundError, match=INCEPTION_FILE): Evaluator('cifar10', path='/nowhere')

def _random_inception_file(path, monkeypatch):
    "Save a randomly initialised TF-Inception state dict (same keys and shapes as the real file) to `path`."
    import torch_fidelity.feature_extractor_inceptionv3 as fe
    with monkeypatch.context() as m:
        m.setattr(fe.FeatureExtractorInceptionV3, 'load_state_dict', lambda self, sd: None)
        m.setattr(torch, 'load', lambda *a, **k: {})
        net = fe.FeatureExtractorInceptionV3('inception-v3-compat', ['2048'], feature_extractor_weights_path='unused')
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path

def test_inception_loads_from_hub_cache_or_path(empty_torch_home, monkeypatch, tmp_path):
    hub_file = _random_inception_file(empty_torch_home/'hub'/'checkpoints'/INCEPTION_FILE, monkeypatch)
    assert inception_weights_path() == hub_file
    net = InceptionFeatures()  # from the hub cache, no download
    f, l = net.extract(torch.rand(2, 1, 16, 16)*2 - 1, bs=2)  # grey images are repeated to RGB; resized to 299 inside
    assert f.shape == (2, 2048) and l.shape == (2, 1008) and net.dim == 2048 and net.n_classes == 1008
    other = tmp_path/'w.pth'; other.write_bytes(hub_file.read_bytes())
    assert InceptionFeatures(other).weights_path == other

_REAL_WEIGHTS_MSG = None
try: inception_weights_path()
except FileNotFoundError as e: _REAL_WEIGHTS_MSG = str(e)

@pytest.mark.skipif(_REAL_WEIGHTS_MSG is not None, reason=_REAL_WEIGHTS_MSG or '')
def test_real_inception_matches_torch_fidelity():
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    net = InceptionFeatures()
    x = torch.rand(4, 3, 32, 32)*2 - 1
    u8 = ((x + 1)*127.5 + 0.5).floor().to(torch.uint8)
    ref = FeatureExtractorInceptionV3('inception-v3-compat', ['2048', 'logits_unbiased'],
                                      feature_extractor_weights_path=str(inception_weights_path()))
    with torch.no_grad(): f_ref, l_ref = ref(u8)
    f, l = net.extract(x)
    torch.testing.assert_close(f, f_ref); torch.testing.assert_close(l, l_ref)

# ---------------------------------------------------------------- in training, and sgn eval
def test_eval_callback_and_cli(tmp_path):
    from sparse_gan_nb.learner import GANLearner
    from sparse_gan_nb.data import gan_dls
    from sparse_gan_nb.models import get_models
    from sparse_gan_nb.core import set_seed
    set_seed(0)
    G, D = get_models('dcgan', nz=16, img_size=16, nc=1, width=.25)
    cb = EvalCallback(every=4, n_samples=100, final_n_samples=150)
    learn = GANLearner(gan_dls('digits', bs=32, size=16), G, D, ema=0.9, run_dir=tmp_path/'run', log_every=4,
                       config=dict(data=dict(name='digits', size=16)), cbs=[cb])
    learn.fit_iters(10)
    assert [r['iter'] for r in cb.results] == [4, 8, 10] and [r['n_samples'] for r in cb.results] == [100, 100, 150]
    hist = (tmp_path/'run'/'history.csv').read_text().splitlines()
    cols = hist[0].split(',')
    assert {'fid', 'precision', 'coverage', 'is_mean'} <= set(cols) and 'extractor' not in cols
    fm = learn.final_metrics
    assert (fm['iter'], fm['n_samples'], fm['reference_split'], fm['extractor']) == (10, 150, 'train', cb.evaluator.extractor.name)
    # it evaluated the EMA generator with the fixed seed
    assert cb.evaluator.evaluate_images(sample_generator(learn.G_ema, 150, seed=0))['fid'] == pytest.approx(fm['fid'])
    learn.save_checkpoint(tmp_path/'ck.safetensors')
    out = evaluate_main([str(tmp_path/'ck.safetensors'), '--n', '150', '--out', str(tmp_path/'m.json')])
    assert out['fid'] == pytest.approx(fm['fid']) and out['ema'] is True
    assert json.loads((tmp_path/'m.json').read_text())['n_samples'] == 150

def test_cli_on_a_folder_of_images(tmp_path):
    from PIL import Image
    x, _ = get_data('digits', split='valid')
    d = tmp_path/'imgs'; d.mkdir()
    for i, im in enumerate(((x[:120, 0] + 1)*127.5).round().byte().numpy()): Image.fromarray(im).save(d/f'{i:03d}.png')
    out = evaluate_main([str(d), '--data', 'digits', '--n', '100'])
    assert out['n_samples'] == 100 and out['precision'] > .7
    with pytest.raises(ValueError, match='--data is required'): evaluate_main([str(d)])
    with pytest.raises(FileNotFoundError, match='does not exist'): evaluate_main([str(tmp_path/'nope.pth'), '--data', 'digits'])
