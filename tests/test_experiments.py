"End-to-end runs of the experiment notebooks through papermill and the `sgn` command, good input and bad."
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch
import papermill as pm
from sparse_gan_nb.experiment import run_notebook, collect_runs
from sparse_gan_nb.learner import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT/'nbs'/'experiments'/'dense_baseline.ipynb'
TINY = dict(n_iter=12, bs=32, log_every=4, sample_every=6, ckpt_every=6, width=0.5, d_width=0.5)

def sgn(*args, cwd=ROOT):
    "Run the installed `sgn` command in a subprocess, as a user would."
    exe = Path(sys.executable).parent/'sgn'
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))

def flags(d): return [a for k, v in d.items() for a in ('-p', k, str(v))]

@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    "One finished smoke run made through the command line."
    out = tmp_path_factory.mktemp('runs')/'dense'
    r = sgn('run', 'dense_baseline', out, *flags(TINY))
    assert r.returncode == 0, r.stderr
    return out, r

def test_run_folder_is_complete(finished):
    out, r = finished
    names = {p.name for p in out.iterdir()}
    assert {'dense_baseline.ipynb', 'history.csv', 'samples', 'checkpoint.pth', 'metrics.json'} <= names
    assert {p.name for p in (out/'samples').iterdir()} == {'iter_000006.png', 'iter_000012.png', 'last.png'}
    m = json.loads((out/'metrics.json').read_text())
    assert m['metrics']['iterations'] == 12 and m['params']['n_iter'] == 12 and m['params']['width'] == 0.5
    assert len((out/'history.csv').read_text().splitlines()) == 1 + 3
    assert read_checkpoint(out/'checkpoint.pth')['g_iter'] == 12
    assert '"iterations": 12' in r.stdout

def test_finished_run_is_not_overwritten(finished):
    out, _ = finished
    r = sgn('run', 'dense_baseline', out, *flags(TINY))
    assert r.returncode == 2 and 'holds a finished run' in r.stderr

def test_collect(finished, tmp_path):
    out, _ = finished
    r = sgn('collect', out.parent)
    assert r.returncode == 0, r.stderr
    assert (out.parent/'runs.csv').exists() and '| run |' in (out.parent/'runs.md').read_text()
    assert collect_runs(out.parent)['metrics.iterations'].tolist() == [12]

def test_relative_paths_are_the_callers(tmp_path):
    "A relative data path means what it means in the shell that ran `sgn`, not in the run folder."
    from PIL import Image
    import numpy as np
    for i in range(8): (tmp_path/'imgs'/'a').mkdir(parents=True, exist_ok=True); Image.fromarray(np.full((8, 8, 3), 30*i, np.uint8)).save(tmp_path/'imgs'/'a'/f'{i}.png')
    r = sgn('run', 'dense_baseline', 'runs/rel', *flags(dict(TINY, n_iter=2, log_every=1, sample_every=2, ckpt_every=2, dataset='folder',
                                                           data_path='imgs', img_size=16, bs=4, eval_n=0)), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path/'runs'/'rel'/'metrics.json').read_text())['params']['data_path'] == 'imgs'

def test_params_lists_types():
    r = sgn('params', 'dense_baseline')
    assert r.returncode == 0 and 'n_iter: int = 300' in r.stdout and 'lr_g: float' in r.stdout

@pytest.mark.parametrize('args,msg', [
    (('-p', 'n_iters', '5'), "unknown parameter 'n_iters'"),
    (('-p', 'n_iter', 'abc'), 'parameter n_iter must be of type int'),
    (('-p', 'lr_g', 'fast'), 'parameter lr_g must be of type float'),
    (('-p', 'conditional', 'maybe'), 'parameter conditional must be of type bool'),
])
def test_bad_names_and_types_fail_before_running(tmp_path, args, msg):
    r = sgn('run', 'dense_baseline', tmp_path/'run', *args)
    assert r.returncode == 2 and msg in r.stderr, r.stderr
    assert not (tmp_path/'run').exists()  # nothing ran, nothing was created

@pytest.mark.parametrize('params,msg', [
    (dict(n_iter=0), 'n_iter must be a whole number > 0'),
    (dict(bs=-4), 'bs must be a whole number > 0'),
    (dict(model='transformer'), "unknown name='transformer'"),
    (dict(loss='wgan'), "unknown loss='wgan'"),
    (dict(dataset='mnist'), "'mnist'"),
    (dict(dataset='cifar10', data_path='/no/such/folder'), '/no/such/folder'),
    (dict(n_iter='abc'), 'n_iter must be a whole number'),        # a wrong type passed straight to papermill
    (dict(width=0.001), 'width'),
])
def test_bad_values_leave_no_finished_run(tmp_path, params, msg):
    "Values that papermill passes straight in are checked by the notebook itself, before training."
    out = tmp_path/'run'; out.mkdir()
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(NB), str(out/'nb.ipynb'), parameters=dict(params, out_dir=str(out)), cwd=str(out),
                            progress_bar=False, kernel_name='python3')
    assert msg in str(e.value), str(e.value)[-2000:]
    assert not (out/'metrics.json').exists() and not (out/'checkpoint.pth').exists()

def test_resume_through_the_notebook_is_exact(tmp_path):
    "A run stopped at 6 steps and resumed to 12 ends with the same weights as a run of 12 steps."
    full = run_notebook(NB, tmp_path/'full', TINY)
    run_notebook(NB, tmp_path/'part', dict(TINY, n_iter=6))
    resumed = run_notebook(NB, tmp_path/'part', dict(TINY, resume=True), overwrite=True)
    a, b = read_checkpoint(tmp_path/'full'/'checkpoint.pth'), read_checkpoint(tmp_path/'part'/'checkpoint.pth')
    assert a['g_iter'] == b['g_iter'] == 12
    for net in ('G', 'D', 'G_ema'):
        for k in a[net]: assert torch.equal(a[net][k], b[net][k]), (net, k)
    assert full['metrics']['loss_d'] == resumed['metrics']['loss_d']

def test_corrupt_checkpoint_on_resume(tmp_path):
    out = tmp_path/'run'; out.mkdir(); (out/'checkpoint.pth').write_bytes(b'\x00garbage')
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(NB), str(out/'nb.ipynb'), parameters=dict(TINY, resume=True, out_dir=str(out)), cwd=str(out),
                            progress_bar=False, kernel_name='python3')
    assert 'is corrupt or not a torch file' in str(e.value)
    assert not (out/'metrics.json').exists()

def test_failed_notebook_reports_the_cell(tmp_path):
    r = sgn('run', 'dense_baseline', tmp_path/'run', '-p', 'model', 'transformer')
    assert r.returncode == 1 and 'the notebook failed in cell' in r.stderr and "unknown name='transformer'" in r.stderr
    assert not (tmp_path/'run'/'metrics.json').exists()
