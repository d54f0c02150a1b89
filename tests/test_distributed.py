"""One run on several processes: DDP over gloo, 2 CPU processes, tiny models (tests/ddp_worker.py does the training).

Each test starts `torchrun --standalone` (a free port each time) with 1 or 2 processes and compares what the processes
wrote. GPU-only cases (NCCL, SyncBatchNorm) carry the `cuda` mark and run when a GPU is there.
"""
import json, math, os, subprocess, sys, time
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT/'tests'/'ddp_worker.py'
SPARSE = {'G': dict(density=0.3, delta_t=3, growth='gradient'), 'D': dict(density=0.5, delta_t=4, growth='random')}
BASE = dict(n_iter=12, t_max=12, sparse=SPARSE, eval=400, eval_fixed=300)

def launch(tmp_path, nproc, name, timeout=240, **cfg):
    "Run the worker on `nproc` processes with config `cfg`; the results of every process, by rank."
    out = tmp_path/name
    cfg = dict(cfg, out=str(out))
    (tmp_path/f'{name}.json').write_text(json.dumps(cfg))
    env = dict(os.environ, OMP_NUM_THREADS='1', SPARSE_GAN_NB_CACHE=str(tmp_path/'cache'))
    t0 = time.time()
    p = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(nproc), str(WORKER),
                        str(tmp_path/f'{name}.json')], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    res = [torch.load(out/f'rank{r}.pt', weights_only=True) for r in range(nproc)]
    res[0]['wall'] = time.time() - t0
    return res

def max_diff(a:dict, b:dict) -> float: return max((a[k].double() - b[k].double()).abs().max().item() for k in a)
def same(a:dict, b:dict) -> bool: return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
def masks_equal(a, b) -> bool: return a.keys() == b.keys() and all(torch.equal(x, y) for n in a for x, y in zip(a[n], b[n]))

@pytest.fixture(scope='module')
def base(tmp_path_factory):
    "The same sparse run (ring8, MLP, no BatchNorm) on 1 process and on 2."
    tmp = tmp_path_factory.mktemp('ddp')
    return tmp, launch(tmp, 1, 'one', **BASE), launch(tmp, 2, 'two', **BASE)

def test_two_processes_are_the_one_process_run(base):
    "2 processes x half the batch = 1 process x the whole batch: losses, weights, masks and update steps; evaluation too."
    _, (one,), (r0, r1) = base
    for r in (one, r0, r1): assert 'error' not in r, r['error']
    assert len(one['loss_d']) == len(r0['loss_d']) == 12
    assert max(abs(a - b) for k in ('loss_d', 'loss_g') for a, b in zip(one[k], r0[k])) < 1e-5
    for net in ('G', 'D', 'G_ema'): assert max_diff(one[net], r0[net]) < 1e-5, net
    assert masks_equal(one['masks'], r0['masks']) and one['update_iters'] == r0['update_iters'] == {'G': [3, 6, 9, 12], 'D': [4, 8, 12]}
    assert abs(one['metrics']['fid'] - r0['metrics']['fid']) < 1e-4 * max(1, one['metrics']['fid'])
    assert one['fixed_metrics'].keys() == r0['fixed_metrics'].keys() and one['fixed_metrics']['n_samples'] == 300
    for k, v in one['fixed_metrics'].items():  # the gathered features are the 1-process run's samples
        w = r0['fixed_metrics'][k]
        assert (math.isnan(v) and math.isnan(w)) or abs(v - w) <= 1e-6 * max(1, abs(v)), (k, v, w)
    assert json.dumps(r0['fixed_metrics']) == json.dumps(r1['fixed_metrics'])

def test_processes_agree_after_every_batch(base):
    "G, D, the EMA generator and every mask are identical on both processes after every batch, and both wrote the same history."
    _, _, (r0, r1) = base
    assert len(r0['checks']) == 12 and all(r0['checks']) and all(r1['checks'])
    for net in ('G', 'D', 'G_ema'): assert same(r0[net], r1[net])
    assert masks_equal(r0['masks'], r1['masks']) and r0['loss_d'] == r1['loss_d']

def test_batchnorm_sparse_two_fits(tmp_path):
    "DCGAN with BatchNorm, n_critic 2, G and D explored, fitted twice on one learner (D left frozen by the first fit): all in step."
    r0, r1 = launch(tmp_path, 2, 'bn', data='digits', model='dcgan', n=256, n_critic=2, n_iter=[8, 16], t_max=16, sparse=SPARSE)
    assert 'error' not in r0, r0['error']
    assert len(r0['checks']) == 32 and all(r0['checks']) and all(r1['checks'])  # 16 G steps x 2 batches, after every batch
    assert r0['versions'] == r1['versions'] and r0['versions']['G'] >= 3 and r0['versions']['D'] >= 3
    for net in ('G', 'D', 'G_ema'): assert same(r0[net], r1[net])

def test_checkpoint_resumes_at_any_world_size(base):
    "A checkpoint of 2 processes (process 0 writes it, plain keys) resumes on 2 bit for bit, and on 1 within 1e-5."
    tmp, _, (two, _) = base
    launch(tmp, 2, 'half', **dict(BASE, n_iter=6, run_dir=str(tmp/'run')))
    ck_path = tmp/'run'/'checkpoint.safetensors'
    from sparse_gan_nb.core import read_checkpoint
    ck = read_checkpoint(ck_path)
    assert ck['world_size'] == 2 and ck['step_iters']['G'] == 6
    assert not any(k.startswith('module.') for k in ck['G']) and not any(k.startswith('module.') for k in ck['D'])
    (again,) = launch(tmp, 2, 'resume2', **dict(BASE, resume=str(ck_path)))[:1]
    (alone,) = launch(tmp, 1, 'resume1', **dict(BASE, resume=str(ck_path)))
    for net in ('G', 'D', 'G_ema'): assert same(again[net], two[net]), net
    assert again['loss_d'] == two['loss_d'] and masks_equal(again['masks'], two['masks'])
    for net in ('G', 'D', 'G_ema'): assert max_diff(alone[net], two[net]) < 1e-5, net
    assert max(abs(a - b) for a, b in zip(alone['loss_g'], two['loss_g'])) < 1e-5 and masks_equal(alone['masks'], two['masks'])

def test_rank_dependent_masks_are_caught_or_overruled(tmp_path):
    "A growth score that differs by process: check_sync stops both processes; without it, process 0's masks keep them identical."
    r0, r1 = launch(tmp_path, 2, 'caught', n_iter=12, t_max=12, sparse=SPARSE, rank_dependent_growth=True, check_sync=True)
    for r in (r0, r1): assert 'computed different masks at G step 3' in r.get('error', ''), r.get('error')
    assert r0['seconds'] < 60 and r1['seconds'] < 60
    r0, r1 = launch(tmp_path, 2, 'overruled', n_iter=12, t_max=12, sparse=SPARSE, rank_dependent_growth=True)
    assert 'error' not in r0 and all(r0['checks']) and all(r1['checks']) and masks_equal(r0['masks'], r1['masks'])

def test_nan_on_one_process_stops_all(tmp_path):
    "A nan loss on process 1 only: both processes raise FloatingPointError at the same step, quickly, with no hang."
    r0, r1 = launch(tmp_path, 2, 'nan', n_iter=12, t_max=12, sparse=SPARSE, nan_at=[1, 4], timeout=120)
    for r in (r0, r1):
        assert r.get('error', '').startswith('FloatingPointError: the D loss is nan at G step 4'), r.get('error')
        assert r['seconds'] < 60

@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
    "A small dense teacher on ring8, trained on one process."
    from sparse_gan_nb.data import gan_dls
    from sparse_gan_nb.models import get_models
    from sparse_gan_nb.learner import GANLearner
    torch.manual_seed(5)
    G, D = get_models('mlp', nz=4, width=0.25)
    L = GANLearner(gan_dls('ring8', bs=32, n=512), G, D, ema=None, config=dict(model=G.model_config, data=dict(name='ring8')))
    L.fit_iters(20)
    return L.save_checkpoint(tmp_path_factory.mktemp('teacher')/'teacher.safetensors')

def test_dgl_student_two_processes(tmp_path, teacher):
    "A DGL-GAN student (dense, the frozen teacher D's term from 30 % of the run) on 2 processes = on 1."
    cfg = dict(n_iter=10, teacher=str(teacher))
    (one,), (two, two1) = launch(tmp_path, 1, 'dgl1', **cfg), launch(tmp_path, 2, 'dgl2', **cfg)
    assert 'error' not in two, two['error']
    assert all(two['checks']) and all(two1['checks'])
    for net in ('G', 'D'): assert max_diff(one[net], two[net]) < 1e-5, net
    assert max(abs(a - b) for a, b in zip(one['loss_g'], two['loss_g'])) < 1e-5

def test_searched_sparse_student_with_teacher_two_processes(tmp_path, teacher):
    "Everything at once: a G with architecture weights and their own step (kept out of DDP, averaged by hand), sparse, with a teacher D."
    cfg = dict(n_iter=9, t_max=9, teacher=str(teacher), arch=True, sparse=SPARSE)
    (one,), (two, two1) = launch(tmp_path, 1, 'all1', **cfg), launch(tmp_path, 2, 'all2', **cfg)
    assert 'error' not in two, two['error']
    assert all(two['checks']) and all(two1['checks'])
    assert (two['G']['alpha'] != 0).all()  # the architecture step trained α
    for net in ('G', 'D'): assert max_diff(one[net], two[net]) < 1e-5, net
    assert masks_equal(one['masks'], two['masks'])

def test_architecture_search_two_processes(tmp_path):
    "alphaGAN's rounds on 2 processes: worst-case copies and α steps see each process's share, with gradients averaged, so every process holds the same α, G and D after every batch."
    two, two1 = launch(tmp_path, 2, 'search2', n_iter=4, data='digits', bs=16, n_critic=5, search=True)
    assert 'error' not in two, two['error']
    assert len(two['checks']) == 20 and all(two['checks']) and all(two1['checks'])
    assert len(two['rounds']) == 4 and two['rounds'] == two1['rounds']  # the same DG, averaged over the processes
    assert all((two['G'][k] != 0).any() for k in two['G'] if k.startswith('alpha.'))
    for net in ('G', 'D'): assert same(two[net], two1[net])

def test_sgn_run_on_two_processes(tmp_path):
    "sgn run --nproc 2: process 0 writes the run folder; process 1 adds only its executed notebook, in .ranks/."
    from sparse_gan_nb.experiment import RUN_MARKER, LOCK_FILE
    env = dict(os.environ, OMP_NUM_THREADS='1', SPARSE_GAN_NB_CACHE=str(tmp_path/'cache'))
    d = tmp_path/'run'
    args = ['run', 'stu_gan', str(d), '-p', 'dataset', 'ring8', '-p', 'model', 'mlp', '-p', 'n_iter', '10', '-p', 'device', 'cpu',
            '-p', 'eval_n', '300', '-p', 'sample_every', '5', '-p', 'ckpt_every', '5', '-p', 'delta_t', '5', '-p', 'bs', '32']
    p = subprocess.run([sys.executable, '-m', 'sparse_gan_nb.cli', *args, '--nproc', '2'], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count('finished:') == 1  # process 0 reports
    files = sorted(str(f.relative_to(d)) for f in d.rglob('*'))
    assert files == sorted([RUN_MARKER, LOCK_FILE, '.ranks', '.ranks/rank1.ipynb', 'checkpoint.safetensors', 'history.csv', 'metrics.json',
                            'progress.json', 'samples', 'samples/iter_000005.png', 'samples/iter_000010.png', 'samples/last.png', 'stu_gan.ipynb']), files
    m = json.loads((d/'metrics.json').read_text())['metrics']
    assert m['processes'] == 2 and m['iterations'] == 10 and m['fid'] > 0
    again = subprocess.run([sys.executable, '-m', 'sparse_gan_nb.cli', *args, '--nproc', '2', '--auto-resume'], capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0 and 'nothing to do' in again.stdout
    bad = subprocess.run([sys.executable, '-m', 'sparse_gan_nb.cli', 'run', 'stu_gan', str(tmp_path/'bad'), '--nproc', '2', '-p', 'd_G', '2'],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == 'sgn run: error: d_G must be a number in (0, 1], got 2.0'
    assert not (tmp_path/'bad').exists()

@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs 2 GPUs (NCCL runs one process per GPU)')
def test_nccl_syncbn_two_gpus(tmp_path):
    "On 2 GPUs with NCCL and SyncBatchNorm, DCGAN (with BatchNorm) on 2 processes matches 1 process within 1e-4 in loss."
    cfg = dict(data='digits', model='dcgan', n=256, n_iter=20, device='cuda')
    (one,), (two, _) = launch(tmp_path, 1, 'g1', **cfg), launch(tmp_path, 2, 'g2', **cfg)
    assert max(abs(a - b) for a, b in zip(one['loss_d'], two['loss_d'])) < 1e-4
