"""No file the library reads can run code: a malicious pickle given to every loader is refused, naming the problem,
and the code it carries never runs. Old checkpoints are converted only on purpose.

The malicious files here carry an object whose unpickling would create a folder (the marker): if any loader
unpickled one, the marker would exist afterwards."""
import contextlib, io, json, os, pickle, subprocess, sys, warnings
from pathlib import Path
import numpy as np
import pytest, torch
from sparse_gan_nb.core import set_seed, CKPT_NAME
from sparse_gan_nb.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent/'fixtures'  # checkpoints written by sparse_gan_nb before its checkpoints were safetensors

class Evil:
    "Unpickling this calls os.makedirs(marker): the harmless stand-in for any code."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.makedirs, (self.marker,))

@pytest.fixture
def evil(tmp_path):
    "A torch.save file (a pickle, as old checkpoints were) carrying the trap, and the marker it would create."
    marker = tmp_path/'CODE-RAN'
    path = tmp_path/'evil'/CKPT_NAME; path.parent.mkdir()
    torch.save(dict(format='sparse_gan_nb.checkpoint/1', config=Evil(marker), G={}), path)
    yield path, marker
    assert not marker.exists(), 'a loader ran the code in the file'

def sgn(*args, cwd=ROOT):
    exe = Path(sys.executable).parent/'sgn'
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS='1'))

def test_resume_refuses_a_pickle(evil):
    from sparse_gan_nb.data import gan_dls
    from sparse_gan_nb.models import get_models
    from sparse_gan_nb.learner import GANLearner
    path, _ = evil
    learn = GANLearner(gan_dls('digits', bs=16, size=16), *get_models('dcgan', nz=8, img_size=16, nc=1, width=.125))
    with pytest.raises(ValueError, match=r"is a zip archive \(torch.save's format: a pickle, which can run code when read\).*sgn convert-checkpoint"):
        learn.fit_iters(2, resume=path)

def test_sgn_resume_refuses_a_pickle(evil, tmp_path):
    from sparse_gan_nb.experiment import prepare_run_dir
    path, _ = evil
    d = prepare_run_dir(tmp_path/'run', 'dense_baseline').path
    (d/CKPT_NAME).write_bytes(path.read_bytes())
    r = sgn('run', 'dense_baseline', d, '-p', 'n_iter', 4)
    assert r.returncode == 2 and 'a pickle, which can run code when read' in r.stderr and len(r.stderr.strip().splitlines()) == 1

def test_teacher_refuses_a_pickle(evil, tmp_path):
    from sparse_gan_nb.distill import load_teacher
    path, _ = evil
    with pytest.raises(ValueError, match='a pickle, which can run code when read'): load_teacher(path)
    r = sgn('run', 'dgl_gan', tmp_path/'s', '-p', 'teacher_ckpt', path)
    assert r.returncode == 2 and 'teacher_ckpt:' in r.stderr and 'a pickle' in r.stderr and not (tmp_path/'s').exists()

def test_stage1_refuses_a_pickle(evil, tmp_path):
    path, _ = evil
    r = sgn('run', 'dgl_gan', tmp_path/'s', '-p', 'stage1_ckpt', path, '-p', 'stage1', 2)
    assert r.returncode == 2 and 'stage1_ckpt:' in r.stderr and 'a pickle' in r.stderr

def test_sgn_eval_refuses_a_pickle(evil):
    path, _ = evil
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main(['eval', str(path)])
    assert rc == 2 and 'a pickle, which can run code when read' in err.getvalue()

def test_caches_never_unpickle(evil, tmp_path, monkeypatch):
    "A pickle where a cache entry should be is rebuilt, with a warning, never read as a pickle."
    from sparse_gan_nb.features import digits_classifier
    from sparse_gan_nb.evaluate import Evaluator
    path, _ = evil
    monkeypatch.setenv('SPARSE_GAN_NB_CACHE', str(tmp_path/'cache'))
    ev = Evaluator('ring8', n_samples=100)
    ev.ref_path.write_bytes(path.read_bytes())
    clf = digits_classifier(); entry = next((tmp_path/'cache'/'classifiers').iterdir())
    entry.write_bytes(path.read_bytes())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        assert not Evaluator('ring8', n_samples=100).ref_cached
        assert not digits_classifier().from_cache
    msgs = ' '.join(str(x.message) for x in w)
    assert str(ev.ref_path) in msgs and str(entry) in msgs and 'a pickle' in msgs

def test_inception_weights_are_read_as_tensors_only(evil, tmp_path):
    from sparse_gan_nb.features import InceptionFeatures
    path, marker = evil
    torch.save({'fc.weight': Evil(marker)}, tmp_path/'w.pth')
    with pytest.raises(ValueError, match='holds more than tensors, so it was not loaded'): InceptionFeatures(tmp_path/'w.pth')

def test_cifar_batches_are_read_with_a_restricted_unpickler(tmp_path):
    from sparse_gan_nb.data import get_data
    marker = tmp_path/'CODE-RAN'
    d = tmp_path/'c10'/'cifar-10-batches-py'; d.mkdir(parents=True)
    ok = {b'batch_label': b'testing batch 1 of 1', b'labels': [3, 1], b'data': np.zeros((2, 3072), np.uint8), b'filenames': [b'a.png', b'b.png']}
    for i in range(1, 6):
        with open(d/f'data_batch_{i}', 'wb') as f: pickle.dump(ok, f, protocol=2)  # the publisher's files are Python 2 pickles
    with open(d/'test_batch', 'wb') as f: pickle.dump(ok, f, protocol=4)
    assert get_data('cifar10', tmp_path/'c10', split='all')[0].shape == (12, 3, 32, 32)  # real batches load
    with open(d/'test_batch', 'wb') as f: pickle.dump(dict(ok, extra=Evil(marker)), f)
    with pytest.raises(ValueError, match='refusing to load os.makedirs'): get_data('cifar10', tmp_path/'c10', split='valid')
    assert not marker.exists()

def test_run_folder_patterns_stay_inside_the_output_folder(tmp_path):
    from sparse_gan_nb.experiment import run_dir_in
    assert run_dir_in(tmp_path, '{method}/seed{seed}', method='STU', seed=1) == tmp_path/'STU'/'seed1'
    for pattern, values in (('../{m}', dict(m='x')), (str(tmp_path.parent/'{m}'), dict(m='x')), ('{m}', dict(m='../../outside')),
                            ('{m}/x', dict(m='/etc'))):
        with pytest.raises(ValueError, match='run folder'): run_dir_in(tmp_path, pattern, **values)

# ---------------------------------------------------------------- converting an old checkpoint, on purpose
def test_convert_refuses_without_trust(evil, tmp_path):
    path, _ = evil
    r = sgn('convert-checkpoint', path, tmp_path/'new.safetensors')
    assert r.returncode == 2 and 'unpickling runs whatever code the file carries' in r.stderr and not (tmp_path/'new.safetensors').exists()

def test_old_checkpoints_convert_evaluate_and_resume(tmp_path):
    "Checkpoints written by the previous version (a dense and a sparse run of 6 G steps) convert, evaluate, and resume."
    from sparse_gan_nb.core import read_checkpoint
    from sparse_gan_nb.data import gan_dls
    from sparse_gan_nb.models import models_from_config
    from sparse_gan_nb.learner import GANLearner
    from sparse_gan_nb.sparse import SparseMaskCallback, SparseStatsCallback, Explore
    for kind in ('dense', 'sparse'):
        new = tmp_path/f'{kind}.safetensors'
        r = sgn('convert-checkpoint', FIXTURES/f'v1_{kind}_checkpoint.pth', new, '--trust-this-file')
        assert r.returncode == 0, r.stderr
        ck = read_checkpoint(new)
        old = torch.load(FIXTURES/f'v1_{kind}_checkpoint.pth', weights_only=False)
        assert all(torch.equal(ck['G'][k], v) for k, v in old['G'].items()) and ck['step_iters'] == dict(D=6, G=6)
        r = sgn('eval', new, '--n', 300)
        assert r.returncode == 0 and json.loads(r.stdout)['reference'] == 'digits', r.stderr
        set_seed(0)
        G, D = models_from_config(ck['config']['model'])
        cbs = [SparseMaskCallback('G', .3, schedule=Explore(2)), SparseMaskCallback('D', .5), SparseStatsCallback()] if kind == 'sparse' else []
        learn = GANLearner(gan_dls('digits', bs=16, seed=0, size=16), G, D, betas=(.5, .999), ema=.9, log_every=2, cbs=cbs)
        learn.fit_iters(8, resume=new)
        assert (learn.g_iter, learn.resumes) == (8, 1) and [r['iter'] for r in learn.history.rows] == [2, 4, 6, 8]
        if kind == 'sparse': assert abs(learn.sparse_g.sparse.density - .3) < .01 and [u['iter'] for u in learn.sparse_g.updates][-1] == 8
