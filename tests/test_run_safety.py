"""Runs that never lose a user's files or report wrong numbers: run-folder rules, locks, kills and resumes, parameters
on resume, overwrite, disk errors, and `sgn collect` on a real runs folder."""
import contextlib, errno, io, json, os, signal, subprocess, sys, time, warnings
from pathlib import Path
import pytest, torch
import nbformat
from sparse_gan_nb import core
from sparse_gan_nb.core import read_checkpoint, CKPT_NAME
from sparse_gan_nb.cli import main
from sparse_gan_nb.experiment import run_notebook, prepare_run_dir, collect_runs, run_states, RunLock, RUN_MARKER, LOCK_FILE

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_iter=12, bs=32, log_every=4, sample_every=6, ckpt_every=6, width=.25, d_width=.25, eval_n='none')

def sgn(*args, cwd=ROOT, **popen):
    exe = Path(sys.executable).parent/'sgn'
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS='1'), **popen)

def sgn_here(*args):
    "`sgn` in this process (so a test can monkeypatch the library), returning (status, stdout, stderr)."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()

def flags(d): return [a for k, v in d.items() for a in ('-p', k, str(v))]
def metrics(d): return json.loads((Path(d)/'metrics.json').read_text())['metrics']

# ---------------------------------------------------------------- what may be a run folder
def test_a_run_never_writes_into_a_folder_of_the_users(tmp_path):
    mine = tmp_path/'mine'; mine.mkdir(); (mine/'history.csv').write_text('my numbers'); (mine/'samples').mkdir()
    r = sgn('run', 'dense_baseline', mine, *flags(TINY))
    assert r.returncode == 2 and 'is not empty and not a run folder' in r.stderr
    assert (mine/'history.csv').read_text() == 'my numbers' and sorted(p.name for p in mine.iterdir()) == ['history.csv', 'samples']
    nbs = tmp_path/'experiments'; nbs.mkdir(); src = ROOT/'nbs'/'experiments'/'dense_baseline.ipynb'
    (nbs/'dense_baseline.ipynb').write_bytes(src.read_bytes())
    r = sgn('run', 'dense_baseline', '.', *flags(TINY), cwd=nbs)  # the folder of the notebooks themselves
    assert r.returncode == 2 and 'not a run folder' in r.stderr and (nbs/'dense_baseline.ipynb').read_bytes() == src.read_bytes()
    r = sgn('run', 'dense_baseline', '/', *flags(TINY))
    assert r.returncode == 2 and "out_dir '/' is not empty and not a run folder" in r.stderr
    r = sgn('run', 'dense_baseline', '', *flags(TINY))
    assert r.returncode == 2 and 'out_dir is empty' in r.stderr

def test_resume_modes(tmp_path):
    r = sgn('run', 'dense_baseline', tmp_path/'a', *flags(TINY), '-p', 'resume', 'must')
    assert r.returncode == 2 and "resume='must', but out_dir" in r.stderr and not (tmp_path/'a').exists()
    part = prepare_run_dir(tmp_path/'b', 'dense_baseline').path
    run_notebook('dense_baseline', part, dict(TINY, n_iter=6)); (part/'metrics.json').unlink()  # stopped after its last checkpoint
    r = sgn('run', 'dense_baseline', part, *flags(TINY), '-p', 'resume', 'never')
    assert r.returncode == 2 and 'holds an unfinished run with a checkpoint' in r.stderr
    (part/f'.{CKPT_NAME}.x1y2z3.tmp').write_bytes(b'a half-written checkpoint of a killed process')
    r = sgn('run', 'dense_baseline', part, *flags(TINY))  # auto: continues, and says so
    assert r.returncode == 0, r.stderr
    executed = nbformat.read(part/'dense_baseline.ipynb', 4)
    said = ''.join(o.get('text', '') for c in executed.cells if c.cell_type == 'code' for o in c.outputs)
    assert 'resuming from checkpoint.safetensors' in said and 'n_iter changed from 6 to 12' in said
    assert not list(part.glob('.*.tmp'))  # the killed write's temporary file was cleaned up
    m = metrics(part)
    assert (m['iterations'], m['resumes'], m['resume_changes']) == (12, 1, [dict(n_iter=[6, 12])])

# ---------------------------------------------------------------- killed after the last checkpoint, then resumed
@pytest.mark.parametrize('nb,params', [
    ('dense_baseline', dict(n_iter=30, log_every=25, ckpt_every=30, sample_every=30, width=.25, d_width=.25, bs=32, eval_n=200)),
    ('dense_baseline', dict(n_iter=10, log_every=25, ckpt_every=30, sample_every=30, width=.25, d_width=.25, bs=32, eval_n=200)),  # n_iter < log_every
    ('dgl_gan', dict(n_iter=10, log_every=25, ckpt_every=30, sample_every=30, teacher_iters=4, bs=32, eval_n=200)),
])
def test_killed_before_metrics_then_resumed_reports_the_same_numbers(tmp_path, nb, params):
    "A run killed after writing its last checkpoint but before metrics.json, resumed, reports what the uninterrupted run does."
    full = run_notebook(nb, tmp_path/'full', params)['metrics']
    first = run_notebook(nb, tmp_path/'killed', params)['metrics']; (tmp_path/'killed'/'metrics.json').unlink()
    res = run_notebook(nb, tmp_path/'killed', params)['metrics']
    for k in ('iterations', 'loss_d', 'loss_g', 'fid', 'precision'): assert res[k] == full[k], (k, res[k], full[k])
    # the time counts both sessions (the second only finishes the run, a few milliseconds; the first's time is the
    # checkpoint's, saved just before that session's end)
    assert res['resumes'] == 1 and res['train_time_s'] >= .9 * first['train_time_s']

def test_overwrite_and_resume_together(tmp_path):
    run_notebook('dense_baseline', tmp_path/'r', TINY)
    r = sgn('run', 'dense_baseline', tmp_path/'r', *flags(TINY), '-p', 'resume', 'must', '--overwrite')
    assert r.returncode == 2 and "resume='must' and overwrite contradict each other" in r.stderr
    assert (tmp_path/'r'/'metrics.json').exists()

# ---------------------------------------------------------------- parameters on resume
def test_resume_refuses_other_parameters(tmp_path):
    d = tmp_path/'r'
    run_notebook('dense_baseline', d, dict(TINY, n_iter=6)); (d/'metrics.json').unlink()
    r = sgn('run', 'dense_baseline', d, *flags(TINY), '-p', 'loss', 'ns', '-p', 'seed', '7', '-p', 'lr_g', '0.001')
    assert r.returncode == 2 and "parameter loss='ns' differs from the checkpoint, which was written with loss='hinge'" in r.stderr
    assert read_checkpoint(d/CKPT_NAME)['step_iters']['G'] == 6 and not (d/'metrics.json').exists()  # untouched
    r = sgn('run', 'dense_baseline', d, *flags(TINY), '-p', 'lr_g', '0.001')
    assert r.returncode == 2 and 'parameter lr_g=0.001 differs' in r.stderr and 'only n_iter, device' in r.stderr

def test_stage1_checkpoint_must_match(tmp_path):
    hp = dict(n_iter=6, bs=32, log_every=2, seed=3, eval_n='none', width=.25, d_width=.25)
    run_notebook('dense_baseline', tmp_path/'teacher', hp)
    run_notebook('dense_baseline', tmp_path/'vanilla', dict(hp, width=.125, d_width=.125))
    r = sgn('run', 'dgl_gan', tmp_path/'s2', '-p', 'teacher_ckpt', tmp_path/'teacher'/CKPT_NAME, '-p', 'stage1_ckpt', tmp_path/'vanilla'/CKPT_NAME,
            '-p', 'stage1', 6, '-p', 'n_iter', 8, '-p', 'seed', 4, '-p', 'bs', 32, '-p', 'log_every', 2, '-p', 'eval_n', 'none')
    assert r.returncode == 1 and "parameter seed=4 differs from the stage-1 checkpoint" in r.stderr, r.stderr

def test_dgl_resume_reuses_its_teacher(tmp_path):
    p = dict(n_iter=10, ckpt_every=5, log_every=5, teacher_iters=4, bs=32, eval_n='none')
    run_notebook('dgl_gan', tmp_path/'s', p); (tmp_path/'s'/'metrics.json').unlink()
    t = tmp_path/'s'/'teacher'
    before = {f: (t/f).read_bytes() for f in (CKPT_NAME, 'metrics.json', 'dense_baseline.ipynb')}
    run_notebook('dgl_gan', tmp_path/'s', p)
    assert all((t/f).read_bytes() == b for f, b in before.items()), 'the teacher was trained again'
    said = ''.join(o.get('text', '') for c in nbformat.read(tmp_path/'s'/'dgl_gan.ipynb', 4).cells if c.cell_type == 'code' for o in c.outputs)
    assert 'reusing the teacher trained before' in said
    df, bad = collect_runs(tmp_path)
    assert sorted(zip(df.run, df.role)) == [('s', 'student'), ('s/teacher', 'teacher')] and bad == []

# ---------------------------------------------------------------- --overwrite
def test_overwrite_checks_first_and_replaces_as_a_whole(tmp_path):
    d = tmp_path/'r'
    run_notebook('dense_baseline', d, TINY)
    first = metrics(d)
    r = sgn('run', 'dense_baseline', d, *flags(TINY), '-p', 'model', 'mlpX', '--overwrite')
    assert r.returncode == 2 and "unknown model='mlpX'" in r.stderr and metrics(d) == first  # a typo destroys nothing
    r = sgn('run', 'dense_baseline', d, *flags(dict(TINY, width=0.001)), '--overwrite')  # fails in the notebook, before a checkpoint
    assert r.returncode == 1 and 'was put back' in r.stderr and metrics(d) == first
    assert {p.name for p in (d/'samples').iterdir()} == {'iter_000006.png', 'iter_000012.png', 'last.png'}
    r = sgn('run', 'dense_baseline', d, *flags(dict(TINY, n_iter=8, sample_every=4)), '--overwrite')
    assert r.returncode == 0, r.stderr
    assert {p.name for p in (d/'samples').iterdir()} == {'iter_000004.png', 'iter_000008.png', 'last.png'}  # no grid of the old run left
    assert metrics(d)['iterations'] == 8 and not list(tmp_path.glob('.r.replaced-*'))

# ---------------------------------------------------------------- one writer: locks, and a kill of sgn
def test_a_run_folder_in_use_is_refused(tmp_path):
    d = prepare_run_dir(tmp_path/'r', 'dense_baseline').path
    with RunLock(d):
        r = sgn('run', 'dense_baseline', d, *flags(TINY))
        assert r.returncode == 2 and f'is in use by process {os.getpid()}' in r.stderr
    assert not (d/'metrics.json').exists()

def test_kill_sgn_mid_run_then_resume_at_once(tmp_path):
    d, p = tmp_path/'r', dict(TINY, n_iter=3000, ckpt_every=5, log_every=50, sample_every=3000)
    exe = Path(sys.executable).parent/'sgn'
    proc = subprocess.Popen([str(exe), 'run', 'dense_baseline', str(d), *flags(p)], cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (d/CKPT_NAME).exists():
        assert time.time() - t0 < 120 and proc.poll() is None, 'the run wrote no checkpoint'
        time.sleep(.2)
    kernel = json.loads((d/LOCK_FILE).read_text())['pid']
    assert kernel != proc.pid  # the lock is the kernel's: the process that writes the run
    proc.send_signal(signal.SIGKILL); proc.wait()
    r = sgn('run', 'dense_baseline', d, *flags(dict(p, n_iter=80)))  # at once, from the same folder
    assert r.returncode == 0, r.stderr
    with pytest.raises(ProcessLookupError): os.kill(kernel, 0)  # the orphaned kernel is gone
    m = metrics(d)
    assert m['iterations'] == 80 and m['resumes'] == 1 and m['resume_changes'] == [dict(n_iter=[3000, 80])]
    assert RunLock(d).holder() == {}  # released

def test_two_runs_start_at_once(tmp_path):
    "Kernels started together talk over sockets of their own (they once shared jupyter_client's default names)."
    exe = Path(sys.executable).parent/'sgn'
    procs = [subprocess.Popen([str(exe), 'run', 'dense_baseline', str(tmp_path/f'r{i}'), *flags(dict(TINY, n_iter=4))], cwd=tmp_path,
                              env=dict(os.environ, OMP_NUM_THREADS='1'), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e[-500:] for _, e in outs]
    assert all(metrics(tmp_path/f'r{i}')['iterations'] == 4 for i in range(3)) and not list(tmp_path.glob('kernel-ipc*'))

# ---------------------------------------------------------------- disks that are full or read-only, and other failures
def test_read_only_run_folder(tmp_path, monkeypatch):
    def denied(*a, **k): raise PermissionError(errno.EACCES, 'Permission denied')
    monkeypatch.setattr(core.tempfile, 'mkstemp', denied)
    rc, _, err = sgn_here('run', 'dense_baseline', tmp_path/'r', *flags(TINY))
    assert rc == 2 and err.strip().count('\n') == 0 and 'could not write' in err and 'permission denied' in err and RUN_MARKER in err

def _toy(tmp_path, body):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("out_dir: str = ''  # run folder"), nbformat.v4.new_code_cell(body)])
    nb.cells[0].metadata['tags'] = ['parameters']; nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    nbformat.write(nb, tmp_path/'toy.ipynb'); return tmp_path/'toy.ipynb'

def test_full_disk_inside_the_notebook_is_one_line(tmp_path):
    nb = _toy(tmp_path, "import errno\nfrom pathlib import Path\nfrom sparse_gan_nb.core import atomic_write\n"
                        "def full(t): raise OSError(errno.ENOSPC, 'No space left on device')\n"
                        "atomic_write(Path(out_dir)/'checkpoint.safetensors', full)")
    r = sgn('run', nb, tmp_path/'r')
    assert r.returncode == 1 and 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 2, r.stderr
    assert "OSError: [Errno 28] could not write" in r.stderr and 'the disk is full' in r.stderr

def test_notebook_without_metrics_is_one_line(tmp_path):
    r = sgn('run', _toy(tmp_path, 'x = 1'), tmp_path/'r')
    assert r.returncode == 2 and 'finished but wrote no metrics.json' in r.stderr and len(r.stderr.strip().splitlines()) == 1

def test_collect_that_cannot_write(tmp_path, monkeypatch):
    run_notebook('dense_baseline', tmp_path/'r', TINY)
    def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(core.tempfile, 'mkstemp', full)
    rc, _, err = sgn_here('collect', tmp_path)
    assert rc == 2 and err.strip().count('\n') == 0 and 'runs.csv' in err and 'the disk is full' in err

def test_truncated_reference_cache_is_rebuilt(tmp_path, monkeypatch):
    from sparse_gan_nb.evaluate import Evaluator
    monkeypatch.setenv('SPARSE_GAN_NB_CACHE', str(tmp_path))
    ev = Evaluator('ring8', n_samples=100)
    ev.ref_path.write_bytes(ev.ref_path.read_bytes()[:50])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); ev2 = Evaluator('ring8', n_samples=100)
    assert not ev2.ref_cached and any(str(ev.ref_path) in str(x.message) and 'rebuilding it' in str(x.message) for x in w)
    assert torch.equal(ev2.ref.features, ev.ref.features) and Evaluator('ring8', n_samples=100).ref_cached

# ---------------------------------------------------------------- sgn collect on a real runs folder
def test_collect_a_messy_runs_folder(tmp_path):
    run_notebook('dense_baseline', tmp_path/'ok', TINY)
    run_notebook('dense_baseline', tmp_path/'part', dict(TINY, n_iter=6)); (tmp_path/'part'/'metrics.json').unlink()
    prepare_run_dir(tmp_path/'dead', 'dense_baseline'); (tmp_path/'dead'/'history.csv').write_text('iter\n')
    (tmp_path/'cut').mkdir(); (tmp_path/'cut'/'metrics.json').write_text('{"metrics": {"fid": 1.')
    (tmp_path/'list').mkdir(); (tmp_path/'list'/'metrics.json').write_text('[1, 2, 3]')
    busy = prepare_run_dir(tmp_path/'busy', 'dense_baseline').path
    with RunLock(busy):
        r = sgn('collect', tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert '1 runs ->' in out and 'unreadable: cut/metrics.json: JSONDecodeError' in out and 'unreadable: list/metrics.json: ValueError' in out
    assert 'unfinished: part (partial)' in out and 'unfinished: dead (started)' in out and 'unfinished: busy (running)' in out
    assert dict(run_states(tmp_path)) == dict(busy='started', dead='started', part='partial')
