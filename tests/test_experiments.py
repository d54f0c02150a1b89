"End-to-end runs of the experiment notebooks through papermill and the `sgn` command, good input and bad."
import json, os, subprocess, sys, time
from pathlib import Path
import pytest, torch
import papermill as pm
from sparse_gan_nb.core import read_checkpoint, CKPT_NAME
from sparse_gan_nb.experiment import run_notebook, collect_runs, notebook_params, find_experiment, check_params, PARAMS, RUN_MARKER

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT/'nbs'/'experiments'/'dense_baseline.ipynb'
TINY = dict(n_iter=12, bs=32, log_every=4, sample_every=6, ckpt_every=6, width=0.5, d_width=0.5)
NOTEBOOKS = ('dense_baseline', 'stu_gan', 'dgl_gan', 'alphagan_search')

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
    assert {'dense_baseline.ipynb', 'history.csv', 'samples', CKPT_NAME, 'metrics.json', RUN_MARKER} <= names
    assert {p.name for p in (out/'samples').iterdir()} == {'iter_000006.png', 'iter_000012.png', 'last.png'}
    m = json.loads((out/'metrics.json').read_text())
    assert m['metrics']['iterations'] == 12 and m['params']['n_iter'] == 12 and m['params']['width'] == 0.5
    assert (m['notebook'], m['role']) == ('dense_baseline', 'baseline')
    assert len((out/'history.csv').read_text().splitlines()) == 1 + 3
    assert read_checkpoint(out/CKPT_NAME)['step_iters']['G'] == 12
    assert 'Traceback' not in r.stdout + r.stderr
    # a file, not a terminal: plain progress lines (the last one the end of training), then the summary
    progress, summary = r.stdout.split('finished: ')
    assert '\r' not in r.stdout and progress.splitlines()[-1].startswith('G step 12/12 (100%)  L_D ') and 'done in' in progress
    assert summary.startswith(f'{out}  (dense_baseline, 12 G steps') and '\n  FID ' in summary and 'samples:' in summary
    assert json.loads((out/'progress.json').read_text())['state'] == 'finished'
    assert 'WARNING' not in r.stderr  # no kernel or papermill noise on the terminal

def test_finished_run_is_not_overwritten(finished):
    out, _ = finished
    r = sgn('run', 'dense_baseline', out, *flags(TINY))
    assert r.returncode == 2 and 'holds a finished run' in r.stderr

def test_collect(finished, tmp_path):
    out, _ = finished
    r = sgn('collect', out.parent)
    assert r.returncode == 0, r.stderr
    assert (out.parent/'runs.csv').exists() and '| run |' in (out.parent/'runs.md').read_text()
    df, bad = collect_runs(out.parent)
    assert df['metrics.iterations'].tolist() == [12] and df['role'].tolist() == ['baseline'] and bad == []

def test_relative_paths_are_the_callers(tmp_path):
    "A relative data path means what it means in the shell that ran `sgn`, not in the run folder."
    from PIL import Image
    import numpy as np
    for i in range(8): (tmp_path/'imgs'/'a').mkdir(parents=True, exist_ok=True); Image.fromarray(np.full((8, 8, 3), 30*i, np.uint8)).save(tmp_path/'imgs'/'a'/f'{i}.png')
    r = sgn('run', 'dense_baseline', 'runs/rel', *flags(dict(TINY, n_iter=2, log_every=1, sample_every=2, ckpt_every=2, dataset='folder',
                                                           data_path='imgs', img_size=16, bs=4, eval_n='none')), '--json', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path/'runs'/'rel'/'metrics.json').read_text())['params']['data_path'] == 'imgs'
    assert json.loads(r.stdout) == json.loads((tmp_path/'runs'/'rel'/'metrics.json').read_text())  # --json: stdout is the file ...
    assert 'G step 2/2 (100%)' in r.stderr  # ... and the progress went to stderr

def test_params_lists_types_and_what_each_accepts():
    r = sgn('params', 'dense_baseline')
    assert r.returncode == 0 and 'n_iter: int = 300' in r.stdout and 'lr_g: float' in r.stdout
    assert "data_path: str | None = None" in r.stdout and '[one of auto, must, never]' in r.stdout

@pytest.mark.parametrize('args,msg', [
    (('-p', 'n_iters', '5'), "unknown parameter 'n_iters'"),
    (('-p', 'n_iter', 'abc'), 'parameter n_iter must be of type int'),
    (('-p', 'lr_g', 'fast'), 'parameter lr_g must be of type float'),
    (('-p', 'conditional', 'maybe'), 'parameter conditional must be of type bool'),
    (('-p', 'dataset', 'cifar11'), "unknown dataset='cifar11'; choose one of 'digits'"),
    (('-p', 'model', 'transformer'), "unknown model='transformer'; choose one of 'dcgan', 'dcgan_sn', 'sngan', 'biggan', 'mlp'"),
    (('-p', 'seed', str(2**64)), 'seed must be a whole number in [0, 4294967295]'),
    (('-p', 'eval_metrics', 'fid,modes'), "eval_metrics asks for 'modes', which is defined for stacked_digits, ring8, grid25, not for dataset='digits'"),
])
def test_bad_names_types_and_values_fail_before_running(tmp_path, args, msg):
    r = sgn('run', 'dense_baseline', tmp_path/'run', *args)
    assert r.returncode == 2 and msg in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert not (tmp_path/'run').exists()  # nothing ran, nothing was created

def test_every_parameter_of_every_experiment_is_checked():
    "Each notebook's defaults pass, and for every parameter a value it should refuse is refused, naming the parameter."
    for nb in NOTEBOOKS:
        declared = notebook_params(find_experiment(nb))
        check_params(declared, {})  # the defaults are valid
        for name, d in declared.items():
            assert name in PARAMS, f'{nb}: parameter {name} has no entry in experiment.PARAMS'
            bad = 'maybe' if d['type'] == 'bool' else PARAMS[name].bad
            if bad is None: continue  # free text (out_dir)
            with pytest.raises((ValueError, TypeError, FileNotFoundError)) as e: check_params(declared, {name: bad})
            assert name in str(e.value), (nb, name, str(e.value))

def test_bad_values_are_refused_before_training_is_loaded(tmp_path):
    "sgn checks parameters before it loads the training stack (fastai, the learner) or starts a kernel; no timing involved."
    code = ("import sys; from sparse_gan_nb.cli import main; rc = main(['run', 'stu_gan', sys.argv[1], '-p', 'delta_t', '0']); "
            "print(rc, sorted(m for m in ('fastai', 'sparse_gan_nb.learner', 'sparse_gan_nb.sparse') if m in sys.modules))")
    r = subprocess.run([sys.executable, '-c', code, str(tmp_path/'run')], capture_output=True, text=True)
    assert r.stdout.split() == ['2', '[]'] and 'delta_t must be a whole number > 0' in r.stderr, (r.stdout, r.stderr)
    assert not (tmp_path/'run').exists()
    r2 = sgn('run', 'stu_gan', tmp_path/'run', '-p', 'growth', 'momentum')
    assert r2.returncode == 2 and "unknown growth='momentum'; choose one of 'gradient', 'random'" in r2.stderr

@pytest.mark.parametrize('params,msg', [
    (dict(n_iter=0), 'n_iter must be a whole number > 0'),
    (dict(bs=-4), 'bs must be a whole number > 0'),
    (dict(model='transformer'), "unknown model='transformer'"),
    (dict(loss='wgan'), "unknown loss='wgan'"),
    (dict(dataset='mnist'), "'mnist'"),
    (dict(dataset='cifar10', data_path='/no/such/folder'), '/no/such/folder'),
    (dict(n_iter='abc'), 'parameter n_iter must be of type int'),        # a wrong type passed straight to papermill
    (dict(width=0.001), 'width'),
])
def test_bad_values_leave_no_finished_run(tmp_path, params, msg):
    "Values that papermill passes straight in are checked by the notebook itself, with the same checks, before training."
    out = tmp_path/'run'
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(NB), str(tmp_path/'nb.ipynb'), parameters=dict(params, out_dir=str(out)), cwd=str(tmp_path),
                            progress_bar=False, kernel_name='python3')
    assert msg in str(e.value), str(e.value)[-2000:]
    assert not (out/'metrics.json').exists() and not (out/CKPT_NAME).exists()

def test_resume_through_the_notebook_is_exact(tmp_path):
    "A run stopped at 6 steps and continued to 12 ends with the same weights and numbers as a run of 12 steps."
    full = run_notebook(NB, tmp_path/'full', TINY)
    run_notebook(NB, tmp_path/'part', dict(TINY, n_iter=6))
    resumed = run_notebook(NB, tmp_path/'part', dict(TINY, resume='must'))  # extends the finished 6-step run
    a, b = read_checkpoint(tmp_path/'full'/CKPT_NAME), read_checkpoint(tmp_path/'part'/CKPT_NAME)
    assert a['step_iters'] == b['step_iters'] == dict(D=12, G=12)
    for net in ('G', 'D', 'G_ema'):
        for k in a[net]: assert torch.equal(a[net][k], b[net][k]), (net, k)
    assert full['metrics']['loss_d'] == resumed['metrics']['loss_d'] and full['metrics']['fid'] == resumed['metrics']['fid']
    assert (resumed['metrics']['resumes'], resumed['metrics']['resume_changes']) == (1, [dict(n_iter=[6, 12])])

def test_corrupt_checkpoint_on_resume(tmp_path):
    from sparse_gan_nb.experiment import prepare_run_dir
    out = prepare_run_dir(tmp_path/'run', 'dense_baseline').path; (out/CKPT_NAME).write_bytes(b'\x00garbage')
    r = sgn('run', 'dense_baseline', out, *flags(TINY))
    assert r.returncode == 2 and 'is corrupt' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (out/'metrics.json').exists()

def test_failed_notebook_reports_the_cell(tmp_path):
    r = sgn('run', 'dense_baseline', tmp_path/'run', '-p', 'width', '0.001')
    assert r.returncode == 1 and 'the notebook failed in cell' in r.stderr and 'width=0.001 gives' in r.stderr
    assert not (tmp_path/'run'/'metrics.json').exists()
