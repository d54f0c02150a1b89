"""Grids of runs: `sgn grid` on a toy experiment (a notebook that checkpoints every step and can crash once), and the
replication specs of bench/grids against the runs recorded in bench/results."""
import json, math, os, signal, subprocess, sys, time
from pathlib import Path
import nbformat, pandas as pd, pytest

ROOT = Path(__file__).resolve().parents[1]
TOY = '''import time
from sparse_gan_nb.core import save_state, load_state, CKPT_KIND
from sparse_gan_nb.experiment import Experiment, write_metrics
run = Experiment.start('toy', globals())
ck = run.dir/'checkpoint.safetensors'
start = load_state(ck, CKPT_KIND)['step'] if run.checkpoint else 0
for step in range(start + 1, n_iter + 1):
    if step == crash_at and not run.checkpoint: raise RuntimeError(f'crash at step {step}')
    save_state(dict(config=dict(params=run.params), step=step), ck, CKPT_KIND); time.sleep(sleep)
write_metrics(run.dir, dict(value=lr * seed, resumed_from=start), run.params); run.lock.release()'''
SPEC = '''notebook = "toy"
out = "runs/toy"
name = "{tag}/lr{lr}/seed{seed}"
[params]
n_iter = 3
[[block]]
tag = "a"
lr = [0.1, 0.2]
seed = [0, 1]
[[block]]
tag = "b"
name = "b/seed{seed}"
seed = [0, 1]
crash_at = 2
'''
NAMES = ['a/lr0.1/seed0', 'a/lr0.1/seed1', 'a/lr0.2/seed0', 'a/lr0.2/seed1', 'b/seed0', 'b/seed1']

@pytest.fixture
def toy(tmp_path):
    "A folder with a toy experiment notebook in nbs/experiments/ and the spec grid.toml."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "lr: float = 0.1  # a rate\nseed: int = 0  # a seed\nn_iter: int = 3  # steps\ncrash_at: int = 0  # crash at this step once\n"
        "sleep: float = 0.0  # seconds per step\nresume: str = 'auto'  # resume\nout_dir: str | None = None  # run folder"),
        nbformat.v4.new_code_cell(TOY)])
    nb.cells[0].metadata['tags'] = ['parameters']; nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    (tmp_path/'nbs'/'experiments').mkdir(parents=True)
    nbformat.write(nb, tmp_path/'nbs'/'experiments'/'toy.ipynb')
    (tmp_path/'grid.toml').write_text(SPEC)
    return tmp_path

def sgn(cwd, *args, env=None, timeout=300, **kw):
    return subprocess.run([sys.executable, '-m', 'sparse_gan_nb.cli', *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS='1', **(env or {})), **kw)

def end_state(out:Path) -> dict:
    "{run: value} of every finished run under `out`."
    return {str(p.parent.relative_to(out)): json.loads(p.read_text())['metrics']['value'] for p in sorted(out.rglob('metrics.json'))}

EXPECTED = {'a/lr0.1/seed0': 0.0, 'a/lr0.1/seed1': 0.1, 'a/lr0.2/seed0': 0.0, 'a/lr0.2/seed1': 0.2, 'b/seed0': 0.0, 'b/seed1': 0.1}

def test_list_jobs_skip_and_resume(toy):
    "--list shows the states; --jobs 2 runs every index, the crashed ones fail once and continue from their checkpoint next time."
    p = sgn(toy, 'grid', 'grid.toml', '--list')
    assert p.returncode == 0, p.stderr
    assert [l.split() for l in p.stdout.splitlines()] == [[str(i), 'to', 'do', n] for i, n in enumerate(NAMES)]
    p = sgn(toy, 'grid', 'grid.toml', '--jobs', '2')
    assert p.returncode == 1 and '6 runs' in p.stdout and '2 failed' in p.stdout, p.stdout + p.stderr
    assert "4 b/seed0: failed (the notebook failed in cell 3: RuntimeError: crash at step 2)" in p.stdout
    states = sgn(toy, 'grid', 'grid.toml', '--list').stdout
    assert [l.split()[1] for l in states.splitlines()] == ['done'] * 4 + ['partial'] * 2
    mtimes = {n: (toy/'runs'/'toy'/n/'metrics.json').stat().st_mtime for n in NAMES[:4]}
    p = sgn(toy, 'grid', 'grid.toml', '--jobs', '2')
    assert p.returncode == 0, p.stdout + p.stderr
    assert '0 a/lr0.1/seed0: skipped (finished already)' in p.stdout and '4 b/seed0: done (continued from its checkpoint' in p.stdout
    out = toy/'runs'/'toy'
    assert end_state(out) == EXPECTED
    assert json.loads((out/'b/seed0/metrics.json').read_text())['metrics']['resumed_from'] == 1
    assert {n: (out/n/'metrics.json').stat().st_mtime for n in NAMES[:4]} == mtimes  # finished runs were not touched
    assert not list(out.glob('.grid-*.json'))  # the worker snapshot is gone
    c = sgn(toy, 'collect', out)
    assert c.returncode == 0 and '6 runs' in c.stdout

def test_index_env_reaches_the_same_end_state(toy):
    "Array tasks (SLURM, Kubernetes, or SGN_INDEX) each run their index; run twice, as a retried array is, they end where --jobs ends."
    envs = ['SLURM_ARRAY_TASK_ID', 'JOB_COMPLETION_INDEX', 'SGN_INDEX']
    for attempt in range(2):
        for i in range(6):
            p = sgn(toy, 'grid', 'grid.toml', '--out', 'arr', '--index', 'env', env={envs[i % 3]: str(i)})
            assert p.returncode == (1 if attempt == 0 and i >= 4 else 0), (i, p.stdout, p.stderr)
    assert end_state(toy/'arr') == EXPECTED
    p = sgn(toy, 'grid', 'grid.toml', '--index', 'env')
    assert p.returncode == 2 and 'none of SGN_INDEX, SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX is set' in p.stderr

def test_two_workers_one_run(toy):
    "Two workers started together on one index: exactly one runs it, the other says who has it."
    (toy/'slow.toml').write_text(SPEC.replace('n_iter = 3', 'n_iter = 3\nsleep = 1.0'))
    ps = [subprocess.Popen([sys.executable, '-m', 'sparse_gan_nb.cli', 'grid', 'slow.toml', '--index', '0'], cwd=toy, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, OMP_NUM_THREADS='1')) for _ in range(2)]
    outs = sorted(p.communicate(timeout=300)[0] for p in ps)
    assert all(p.returncode == 0 for p in ps)
    assert sum(': done (' in o for o in outs) == 1 and sum('skipped (another worker has it (process' in o for o in outs) == 1, outs

def test_killed_worker_is_taken_over(toy):
    "--list says a run is running while a worker has it; after kill -9 of the worker, the next one takes the run over and continues it."
    (toy/'slow.toml').write_text(SPEC.replace('n_iter = 3', 'n_iter = 30\nsleep = 0.3'))
    w = subprocess.Popen([sys.executable, '-m', 'sparse_gan_nb.cli', 'grid', 'slow.toml', '--index', '1'], cwd=toy, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS='1'))
    ck, t0 = toy/'runs'/'toy'/'a/lr0.1/seed1'/'checkpoint.safetensors', time.time()
    while not ck.exists() and time.time() - t0 < 120: time.sleep(0.2)
    assert ck.exists()
    states = sgn(toy, 'grid', 'slow.toml', '--list').stdout.splitlines()
    assert states[1].split()[1] == 'running' and states[0].split()[1:3] == ['to', 'do'], states
    os.killpg(w.pid, signal.SIGKILL); w.wait()
    p = sgn(toy, 'grid', 'slow.toml', '--index', '1')
    assert p.returncode == 0 and 'done (continued from its checkpoint' in p.stdout, p.stdout + p.stderr
    m = json.loads((ck.parent/'metrics.json').read_text())['metrics']
    assert m['value'] == 0.1 and m['resumed_from'] > 0

def test_sbatch_writes_an_array_against_a_snapshot(toy):
    "--sbatch: one array task per run, pointed at a snapshot; the snapshot runs the same grid; another grid may not replace it."
    p = sgn(toy, 'grid', 'grid.toml', '--sbatch', '--partition', 'gpu', '--gpus', '1', '--time', '04:00:00', '--max-parallel', '3',
            '--set', 'n_iter', '4')
    assert p.returncode == 0, p.stderr
    out = toy/'runs'/'toy'
    script = (out/'grid.sbatch').read_text()
    for line in ('#SBATCH --array=0-5%3', '#SBATCH --partition=gpu', '#SBATCH --gpus-per-task=1', '#SBATCH --time=04:00:00', '#SBATCH --requeue'):
        assert line in script, line
    assert f"cli grid {out/'grid.json'} --index env" in script
    snap = json.loads((out/'grid.json').read_text())
    assert snap['out'] == str(out) and snap['params']['n_iter'] == 4
    p = sgn(toy, 'grid', out/'grid.json', '--index', '2', env={})
    assert p.returncode == 0 and p.stdout.startswith('2 a/lr0.2/seed0: done'), p.stdout + p.stderr
    (toy/'grid.toml').write_text(SPEC.replace('seed = [0, 1]\n[[block]]', 'seed = [0, 1, 2]\n[[block]]'))
    p = sgn(toy, 'grid', 'grid.toml', '--sbatch')
    assert p.returncode == 2 and 'holds another grid' in p.stderr

def test_bad_specs_are_refused(toy):
    "A typo, a duplicate folder, a missing spec: one line each, nothing run."
    (toy/'bad.toml').write_text(SPEC.replace('n_iter = 3', 'n_itr = 3'))
    p = sgn(toy, 'grid', 'bad.toml', '--jobs', '2')
    assert p.returncode == 2 and "grid run 0 (a/lr0.1/seed0): unknown parameter 'n_itr'" in p.stderr
    (toy/'dup.toml').write_text(SPEC.replace('name = "{tag}/lr{lr}/seed{seed}"', 'name = "{tag}/seed{seed}"'))
    p = sgn(toy, 'grid', 'dup.toml', '--list')
    assert p.returncode == 2 and "runs 0 and 2 both go to folder 'a/seed0'" in p.stderr
    p = sgn(toy, 'grid', 'nope.toml')
    assert p.returncode == 2 and "grid spec 'nope.toml' does not exist" in p.stderr
    assert not (toy/'runs').exists()

SMALL = SPEC.split('[[block]]\ntag = "b"')[0].replace('lr = [0.1, 0.2]', 'lr = 0.2')  # two runs that finish: a/lr0.2/seed0, seed1

def test_submitit_local_executor(toy):
    "--submitit --local runs the indices through submitit's local executor (one job array), to the end state --jobs reaches."
    pytest.importorskip('submitit')
    (toy/'small.toml').write_text(SMALL)
    p = sgn(toy, 'grid', 'small.toml', '--out', 'sub', '--submitit', '--local', timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert end_state(toy/'sub') == {k: v for k, v in EXPECTED.items() if k.startswith('a/lr0.2')}

def test_ray_local(toy, tmp_path_factory):
    "--ray runs the indices as tasks of a local Ray, to the end state --jobs reaches."
    pytest.importorskip('ray')
    (toy/'small.toml').write_text(SMALL)
    env = dict(RAY_AUTH_MODE='disabled', RAY_USAGE_STATS_ENABLED='0', RAY_TMPDIR=str(tmp_path_factory.mktemp('ray')))
    p = sgn(toy, 'grid', 'small.toml', '--out', 'ray', '--ray', env=env, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr[-2000:]
    assert end_state(toy/'ray') == {k: v for k, v in EXPECTED.items() if k.startswith('a/lr0.2')}

def _same(spec_value, recorded) -> bool:
    "A spec's value against the one a run recorded in runs.csv."
    if isinstance(recorded, float) and math.isnan(recorded): return spec_value in (None, 'none')
    if isinstance(spec_value, bool) or isinstance(recorded, bool): return str(spec_value) == str(recorded)
    if isinstance(spec_value, (int, float)): return float(spec_value) == float(recorded)
    return str(spec_value) == str(recorded)

STU_LATER = {'SNIP', 'GMP-global', 'IMP-LTH', 'STU-authors'}  # blocks of stu.toml added after bench/results/stu_1500steps was recorded

def _recorded(recorded:str) -> pd.DataFrame:
    "The runs a results folder's runs.csv holds that its own grid ran (rows joined from an earlier grid carry a source)."
    df = pd.read_csv(ROOT/'bench'/'results'/recorded/'runs.csv')
    return (df[df['source'].isna()] if 'source' in df else df).set_index('run')

@pytest.mark.parametrize('spec,sets,recorded,blocks', [
    ('stu.toml', {}, 'stu_1500steps', 'first'),
    ('stu.toml', dict(n_iter=4000, sample_every=4000, ckpt_every=4000), 'stu_4000steps', 'first'),
    ('stu.toml', {}, 'stu_baselines', 'later'),
    ('stu_curves.toml', {}, 'stu_curves', 'all'),
    ('stu_dD.toml', {}, 'stu_dD', 'all'),
    ('stu_long.toml', {}, 'stu_long', 'all'),
    ('stu_sngan.toml', {}, 'stu_sngan', 'all')])
def test_replication_specs_are_the_recorded_runs(spec, sets, recorded, blocks):
    "bench/grids/stu*.toml give the folders and parameters of the runs whose results bench/results holds (stu.toml in two parts: the first 42 runs, then the later blocks)."
    from sparse_gan_nb.grid import read_spec, resolve_spec, expand
    runs = expand(resolve_spec(read_spec(ROOT/'bench'/'grids'/spec), '/tmp/unused', sets))
    if blocks != 'all': runs = [r for r in runs if (r.tag in STU_LATER) == (blocks == 'later')]
    runs = [r for r in runs if not r.name.startswith('check/')]  # a reproduction check is reported in check.csv, not as a run
    df = _recorded(recorded)
    assert sorted(r.name for r in runs) == sorted(df.index)
    for r in runs:
        row = df.loc[r.name]
        for k, v in r.params.items():
            if f'params.{k}' in row: assert _same(v, row[f'params.{k}']), (r.name, k, v, row[f'params.{k}'])

def test_dgl_specs_are_the_recorded_runs():
    "bench/grids/dgl*.toml: the teacher, 75 students and 9 boost runs against its checkpoint under one folder; they are the runs of bench/results/dgl_replication."
    from sparse_gan_nb.grid import read_spec, expand
    (t,) = expand(read_spec(ROOT/'bench'/'grids'/'dgl_teacher.toml'), '/tmp/dgl')
    students = expand(read_spec(ROOT/'bench'/'grids'/'dgl.toml'), '/tmp/dgl')
    boost = expand(read_spec(ROOT/'bench'/'grids'/'dgl_boost.toml'), '/tmp/dgl')
    assert t.name == 'teacher' and t.params['n_iter'] == 2400 and t.params['seed'] == 1000 and t.params['width'] == 2.
    assert len(students) == 75 and len(boost) == 9 and {r.notebook for r in students + boost} == {'dense_baseline', 'dgl_gan'}
    assert {r.params['teacher_ckpt'] for r in students + boost if r.notebook == 'dgl_gan'} == {str(t.folder/'checkpoint.safetensors')}
    v = next(r for r in students if r.name == 'vanilla-w0.25-s2')
    assert float(v.params['d_width']) == v.params['width'] == 0.25 and v.params['seed'] == 2
    kd = [(r.params['width_mult'], r.params['kd']) for r in students if r.name.startswith('kdw') and r.params['seed'] == 0]
    assert sorted(kd) == [(.125, 30.), (.25, .3), (.25, 3.), (.25, 10.), (.25, 30.), (.25, 100.), (.25, 300.), (.5, 30.)]
    runs = students + boost
    assert len({r.name for r in runs}) == len(runs)  # no boost run shares a folder with a student
    rec = pd.read_csv(ROOT/'bench'/'results'/'dgl_replication'/'runs.csv').set_index('run')
    assert sorted(rec.index) == sorted([t.name] + [r.name for r in runs])
    for r in runs:
        row = rec.loc[r.name]
        assert row.seed == r.params['seed'] and row.n_iter == r.params['n_iter'], r.name
        if r.notebook == 'dgl_gan':
            want = (r.params['lam'], r.params['width_mult'], bool(r.params.get('reset_opt', False)), r.params.get('kd', 0.))
            assert (row.lam, row.width_mult, bool(row.reset_opt), row.kd) == want, r.name
