"DGL-GAN: the frozen teacher, its composition with sparse training, stages, resume, and every bad input, on a teacher written by the dense baseline."
import copy, os, subprocess, sys
from pathlib import Path
import pytest, torch
from fastai.callback.core import Callback
from sparse_gan_nb.core import set_seed, save_state, CKPT_NAME, CKPT_KIND
from sparse_gan_nb.data import gan_dls
from sparse_gan_nb.learner import GANLearner, read_checkpoint
from sparse_gan_nb.models import get_models
from sparse_gan_nb.experiment import run_notebook
from sparse_gan_nb.distill import *

ROOT = Path(__file__).resolve().parents[1]
TEACHER = dict(dataset='digits', model='sngan', img_size=16, nz=16, width=.25, d_width=.25, n_iter=6, bs=32,
               log_every=3, sample_every=6, ckpt_every=6, beta1=0., beta2=.9, seed=5, eval_n=None)

@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    "A spectrally normalised SNGAN teacher, trained and saved by the dense baseline notebook itself."
    out = tmp_path_factory.mktemp('teacher')/'run'
    run_notebook('dense_baseline', out, TEACHER)
    return out/CKPT_NAME

@pytest.fixture(scope='module')
def dls(): return gan_dls('digits', bs=32, seed=0, size=16)

def learner(teacher, cbs, width=.5, seed=0, run_dir=None, dls=None, **kw):
    set_seed(seed)
    return GANLearner(dls if dls is not None else gan_dls('digits', bs=32, seed=seed, size=16), *student_models(teacher, width), ema=.9,
                      log_every=2, cbs=cbs, run_dir=run_dir, **kw)

def state(m): return {k: v.detach().clone() for k, v in m.state_dict().items()}
def same(a, b): return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

class GradProbe(Callback):
    "After our callback: G's gradient is the vanilla one plus λ times the teacher term's, which is not zero; D's loss is vanilla."
    order = 6
    def __init__(self, dgl): self.dgl, self.checked, self.modes = dgl, 0, []
    def after_loss(self):
        L, G = self.learn.loss_func, self.learn.G
        self.modes.append([t.training for t in self.dgl.teachers])
        if self.learn.phase == 'D':
            assert torch.equal(self.learn.loss_grad, L.d_loss(self.learn.real_pred, self.learn.fake_pred)); return
        if not self.dgl.active: return
        ps = [p for p in G.parameters() if p.requires_grad]
        g_all = torch.autograd.grad(self.learn.loss_grad, ps, retain_graph=True)
        g_van = torch.autograd.grad(L.g_loss(self.learn.fake_pred), ps, retain_graph=True)
        g_t = torch.autograd.grad(self.dgl.term(self.learn.fake), ps, retain_graph=True)
        assert sum(g.abs().sum() for g in g_t) > 0
        for a, v, t in zip(g_all, g_van, g_t): torch.testing.assert_close(a, v + self.dgl.lam * t)
        self.checked += 1

def test_loads_dense_baseline_checkpoint(teacher_ckpt, dls):
    t = load_teacher(teacher_ckpt, dls)
    assert t.config == dict(name='sngan', nz=16, img_size=16, width=.25, d_width=.25, n_classes=0, nc=1)
    ck = read_checkpoint(teacher_ckpt)
    assert same(t.G.state_dict(), ck['G_ema']) and same(t.D.D.state_dict(), ck['D'])
    assert any(k.endswith('_u') for k in ck['D'])  # a spectrally normalised teacher

def test_teacher_frozen_during_training(teacher_ckpt, dls):
    t = load_teacher(teacher_ckpt, dls)
    before = state(t.D)
    sn = [k for k in before if k.endswith('_u') or k.endswith('_v')]
    assert sn, 'the SNGAN teacher should have power-iteration buffers'
    dgl = TeacherDiscriminatorLoss(t.D, lam=.1, start=0)
    probe = GradProbe(dgl)
    learn = learner(t, [dgl, probe], dls=dls)
    t.D.train()  # asking for train mode changes nothing
    learn.fit_iters(6)
    assert probe.checked == 6 and all(m == [False] for m in probe.modes)
    after = state(t.D)
    assert same(before, after), 'teacher parameters or spectral-norm buffers changed'
    assert all(not p.requires_grad and p.grad is None for p in t.D.parameters())
    tids = {id(p) for p in t.D.parameters()}
    assert not tids & {id(p) for o in (learn.opt_G, learn.opt_D) for g in o.param_groups for p in g['params']}
    assert not tids & {id(p) for p in learn.model.parameters()}
    assert len(learn.history.rows) == 3 and all(r['lam_on'] == .1 and r['loss_teacher'] == r['loss_teacher'] for r in learn.history.rows)

def test_lambda_zero_is_vanilla(teacher_ckpt, dls):
    t = load_teacher(teacher_ckpt, dls)
    a = learner(t, [TeacherDiscriminatorLoss(t.D, lam=0., start=0)]); a.fit_iters(5)
    b = learner(t, []); b.fit_iters(5)
    assert same(a.G.state_dict(), b.G.state_dict()) and same(a.D.state_dict(), b.D.state_dict())

@pytest.mark.parametrize('start,first', [(.5, 5), (3, 3), (0, 0), (0., 0)])
def test_stage_boundary(teacher_ckpt, dls, start, first):
    t = load_teacher(teacher_ckpt, dls)
    class On(Callback):
        order = 6
        def __init__(self): self.on = []
        def after_loss(self):
            if self.learn.phase == 'G': self.on.append(not torch.equal(self.learn.loss_grad, self.learn.loss_func.g_loss(self.learn.fake_pred)))
    dgl, on = TeacherDiscriminatorLoss(t.D, start=start), On()
    learner(t, [dgl, on], dls=dls).fit_iters(10)
    assert dgl.start_iter == first and on.on == [False] * first + [True] * (10 - first)

def test_stage2_from_stage1_checkpoint(teacher_ckpt, tmp_path, dls):
    t = load_teacher(teacher_ckpt, dls)
    whole = learner(t, [TeacherDiscriminatorLoss(t.D, start=4)], dls=dls); whole.fit_iters(8)
    s1 = learner(t, [], run_dir=tmp_path/'s1', dls=dls); s1.fit_iters(4); s1.save_checkpoint()
    s2 = learner(t, [TeacherDiscriminatorLoss(t.D, start=0)], seed=99, dls=dls); s2.fit_iters(8, resume=tmp_path/'s1'/CKPT_NAME)
    assert s2.g_iter == 8 and same(whole.G.state_dict(), s2.G.state_dict()) and same(whole.D.state_dict(), s2.D.state_dict())
    # a resume in the middle of stage 2 is exact too, and refuses another teacher
    mid = learner(t, [TeacherDiscriminatorLoss(t.D, start=4)], run_dir=tmp_path/'mid', dls=dls); mid.fit_iters(6); mid.save_checkpoint()
    res = learner(t, [TeacherDiscriminatorLoss(t.D, start=4)], seed=7, dls=dls); res.fit_iters(8, resume=tmp_path/'mid'/CKPT_NAME)
    assert same(whole.G.state_dict(), res.G.state_dict())
    other = FrozenDiscriminator(get_models('sngan', nz=16, img_size=16, nc=1, width=.25)[1])
    with pytest.raises(ValueError, match='trained against other teacher networks'):
        learner(t, [TeacherDiscriminatorLoss(other, start=4)], dls=dls).fit_iters(8, resume=tmp_path/'mid'/CKPT_NAME)

def test_sparse_student_with_teacher(teacher_ckpt, tmp_path, dls):
    "A sparse student (STU-GAN's masks on G, with exploration, and on D) trained with the teacher term just works."
    from sparse_gan_nb.sparse import SparseMaskCallback, Explore
    t = load_teacher(teacher_ckpt, dls)
    before = state(t.D)
    cbs = lambda: [SparseMaskCallback('G', density=.3, schedule=Explore(3)), SparseMaskCallback('D', density=.5),
                   TeacherDiscriminatorLoss(t.D, start=2)]
    learn = learner(t, cbs(), run_dir=tmp_path/'sparse', dls=dls)
    learn.fit_iters(5); learn.save_checkpoint(); learn.fit_iters(8)
    sg = learn.sparse_g.sparse
    for p, m in zip(sg.params, sg.masks.values()): assert torch.equal(p.detach() * (1 - m), torch.zeros_like(p))
    ema = dict(learn.G_ema.named_parameters())
    for k, m in sg.masks.items(): assert torch.equal(ema[sg.param_names[k]].detach() * (1 - m), torch.zeros_like(m))
    assert abs(sg.density - .3) < .02 and learn.sparse_g.updates, 'the masks should have explored'
    assert same(before, state(t.D))
    rows = learn.history.rows
    assert {r['iter']: r['lam_on'] for r in rows if r['iter'] % 2 == 0} == {2: 0., 4: .1, 6: .1, 8: .1} and all('G_density' in r for r in rows)
    # and the pair resumes exactly from the middle of the run
    again = learner(t, cbs(), seed=3, dls=dls)
    again.fit_iters(8, resume=tmp_path/'sparse'/CKPT_NAME)
    assert same(again.G.state_dict(), learn.G.state_dict())

def test_conditional_teacher_gets_labels(dls):
    set_seed(0)
    G, D = get_models('sngan', nz=16, img_size=16, nc=1, width=.25, n_classes=10)
    Ds, T = copy.deepcopy(D), FrozenDiscriminator(D)
    seen = []
    T.D.register_forward_pre_hook(lambda m, args: seen.append(args[1] is not None))
    GANLearner(dls, G, Ds, cbs=[TeacherDiscriminatorLoss(T, start=0)]).fit_iters(2)
    assert seen == [True, True]

def test_device_and_dtype(teacher_ckpt, dls):
    t = load_teacher(teacher_ckpt, dls)
    T = FrozenDiscriminator(copy.deepcopy(t.D.D).double())
    learner(t, [TeacherDiscriminatorLoss(T, start=0)], dls=dls).fit_iters(2)
    assert next(T.parameters()).dtype == torch.float32
    T = FrozenDiscriminator(copy.deepcopy(t.D.D).double())
    with pytest.raises(ValueError, match='teacher 0 is on cpu in torch.float64 but the student G is on cpu in torch.float32'):
        learner(t, [TeacherDiscriminatorLoss(T, move=False)], dls=dls).fit_iters(2)
    with torch.device('meta'): M = get_models('sngan', nz=16, img_size=16, nc=1, width=.25)[1]
    with pytest.raises(ValueError, match='meta device, so it has no weights'):
        learner(t, [TeacherDiscriminatorLoss(M)], dls=dls).fit_iters(2)
    if torch.cuda.is_available():
        T = FrozenDiscriminator(copy.deepcopy(t.D.D).cuda())
        learner(t, [TeacherDiscriminatorLoss(T, start=0)], dls=dls).fit_iters(2)
        assert next(T.parameters()).device.type == 'cpu'

@pytest.mark.parametrize('kw,msg', [
    (dict(lam=-.1), 'lam must be a finite number >= 0'), (dict(lam=float('nan')), 'lam must be a finite number >= 0'),
    (dict(lam=float('inf')), 'lam must be a finite number >= 0'), (dict(start=1.5), 'start must be a G-step count'),
    (dict(start=-2), 'start must be a G-step count'), (dict(start='half'), 'start must be a G-step count')])
def test_bad_callback_args(teacher_ckpt, dls, kw, msg):
    with pytest.raises(ValueError, match=msg): TeacherDiscriminatorLoss(load_teacher(teacher_ckpt, dls).D, **kw)

@pytest.mark.parametrize('start', [10, 25, .9999, 1.])
def test_boundary_outside_run(teacher_ckpt, dls, start):
    t = load_teacher(teacher_ckpt, dls)
    with pytest.raises(ValueError, match='outside the run of 10 G steps'): learner(t, [TeacherDiscriminatorLoss(t.D, start=start)], dls=dls).fit_iters(10)

def test_zero_channel_width(teacher_ckpt, dls):
    t = load_teacher(teacher_ckpt, dls)
    with pytest.raises(ValueError, match=r"width_mult=0.01, d_width_mult=0.01 on the config's widths \(G 0.25, D 0.25\) leave a layer with no channel"):
        student_models(t, .01)
    with pytest.raises(ValueError, match='width_mult must be a number > 0'): student_models(t, -.5)
    with pytest.raises(ValueError, match='d_width_mult must be a number > 0'): student_models(t, .5, float('nan'))

def test_bad_teacher_checkpoints(teacher_ckpt, tmp_path, dls):
    with pytest.raises(FileNotFoundError, match="missing.safetensors' does not exist"): load_teacher(tmp_path/'missing.safetensors', dls)
    (tmp_path/'corrupt.safetensors').write_bytes(teacher_ckpt.read_bytes()[:1000])
    with pytest.raises(ValueError, match='is corrupt'): load_teacher(tmp_path/'corrupt.safetensors', dls)
    ck = read_checkpoint(teacher_ckpt)
    def with_model(fname, **model):
        save_state(dict(ck, config=dict(ck['config'], model=dict(ck['config']['model'], **model))), tmp_path/fname, CKPT_KIND)
        return tmp_path/fname
    with pytest.raises(ValueError, match=r"teacher checkpoint .*wide.safetensors.*: D \(sngan at the config's width\) does not fit: tensor '.+' has shape"):
        load_teacher(with_model('wide.safetensors', d_width=.5), dls)
    with pytest.raises(ValueError, match='does not fit: the checkpoint has no tensor'): load_teacher(with_model('family.safetensors', name='dcgan'), dls)
    save_state(dict(ck, config={}), tmp_path/'noconfig.safetensors', CKPT_KIND)
    with pytest.raises(ValueError, match='names no model'): load_teacher(tmp_path/'noconfig.safetensors', dls)
    with pytest.raises(ValueError, match="the teacher was trained on dataset='digits' but the student's data is 'stacked_digits'"):
        load_teacher(teacher_ckpt, gan_dls('stacked_digits', bs=32, size=16, n=200))
    with pytest.raises(ValueError, match="the teacher was trained with nc=3 but the student's data has nc=1"): load_teacher(with_model('nc3.safetensors', nc=3), dls)
    with pytest.raises(ValueError, match="the teacher was trained with img_size=16 but the student's data has img_size=8"):
        load_teacher(teacher_ckpt, gan_dls('digits', bs=32, size=8))

def test_experiment_notebook(teacher_ckpt, tmp_path):
    "The papermill notebook through `sgn`: a student from the baseline's teacher, and a clear error for a bad parameter."
    exe = Path(sys.executable).parent/'sgn'
    def sgn(out, **p):
        return subprocess.run([str(exe), 'run', 'dgl_gan', str(out), *[a for k, v in p.items() for a in ('-p', k, str(v))]],
                              capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'))
    same_hp = dict(n_iter=6, bs=32, log_every=2, beta1=0., beta2=.9, seed=3, eval_n='none')
    r = sgn(tmp_path/'ok', teacher_ckpt=teacher_ckpt, width_mult=.5, stage1=2, **same_hp)
    assert r.returncode == 0, r.stderr[-2000:]
    import json, pandas as pd
    m = json.loads((tmp_path/'ok'/'metrics.json').read_text())['metrics']
    assert m['iterations'] == 6 and m['stage2_start'] == 2 and 0 < m['G_params_ratio'] < .5
    h = pd.read_csv(tmp_path/'ok'/'history.csv')
    assert h.lam_on.tolist() == [0., .1, .1] and h.loss_teacher.notna().all()
    assert read_checkpoint(tmp_path/'ok'/CKPT_NAME)['config']['model']['width'] == .125
    # stage 1 is the dense baseline's run at the student's width, step for step (a paired comparison)
    run_notebook('dense_baseline', tmp_path/'vanilla', dict(same_hp, dataset='digits', model='sngan', img_size=16, nz=16, width=.125, d_width=.125))
    v = pd.read_csv(tmp_path/'vanilla'/'history.csv')
    assert (v.loss_d[0], v.loss_g[0]) == (h.loss_d[0], h.loss_g[0]) and v.loss_g[2] != h.loss_g[2]
    # stage 2 as its own run, from that vanilla run's checkpoint
    r = sgn(tmp_path/'s2', teacher_ckpt=teacher_ckpt, width_mult=.5, stage1_ckpt=tmp_path/'vanilla'/CKPT_NAME, stage1=6,
            **dict(same_hp, n_iter=8, eval_n=200, eval_metrics='fid,pr'))
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path/'s2'/'metrics.json').read_text())['metrics']
    h2 = pd.read_csv(tmp_path/'s2'/'history.csv')
    assert (m['iterations'], m['stage2_start']) == (8, 6) and h2.iter.tolist() == [2, 4, 6, 8] and h2.lam_on.iloc[-1] == .1
    assert m['fid'] > 0 and 0 <= m['precision'] <= 1 and m['n_samples'] == 200
    assert h2.loss_g[:3].tolist() == v.loss_g.tolist()
    r = sgn(tmp_path/'bad', teacher_ckpt=teacher_ckpt, lam=-1, n_iter=6)
    assert r.returncode != 0 and 'lam must be a finite number >= 0' in r.stderr
    # the distillation baseline: the teacher G's term alone, in two stages, with fresh optimizers for stage 2
    r = sgn(tmp_path/'kd', teacher_ckpt=teacher_ckpt, width_mult=.5, stage1=2, lam=0, kd=1, reset_opt='true', **same_hp)
    assert r.returncode == 0, r.stderr[-2000:]
    hk = pd.read_csv(tmp_path/'kd'/'history.csv')
    assert hk.kd_on.tolist() == [0., 1., 1.] and hk.lam_on.eq(0.).all() and hk.loss_kd.gt(0).all()
    assert (hk.loss_d[0], hk.loss_g[0]) == (h.loss_d[0], h.loss_g[0])  # the same stage 1 as the DGL run's
    r = sgn(tmp_path/'bad_kd', teacher_ckpt=teacher_ckpt, kd=1, kd_loss='l2', n_iter=6)
    assert r.returncode != 0 and "unknown kd_loss='l2'; choose one of 'l1', 'mse'" in r.stderr

def test_reset_opt_at_the_boundary_and_across_resumes(teacher_ckpt, tmp_path, dls):
    "reset_opt drops G's and D's Adam state once, at the first batch of stage 2; a resume inside stage 2 does not reset again."
    t = load_teacher(teacher_ckpt, dls)
    steps = lambda l: (int(l.opt_G.opt.state[next(l.G.parameters())]['step']), int(l.opt_D.opt.state[next(l.D.parameters())]['step']))
    whole = learner(t, [TeacherDiscriminatorLoss(t.D, start=4, reset_opt=True)], dls=dls); whole.fit_iters(8)
    assert steps(whole) == (4, 4)
    plain = learner(t, [TeacherDiscriminatorLoss(t.D, start=4)], dls=dls); plain.fit_iters(8)
    assert steps(plain) == (8, 8) and not same(whole.G.state_dict(), plain.G.state_dict())
    mid = learner(t, [TeacherDiscriminatorLoss(t.D, start=4, reset_opt=True)], run_dir=tmp_path/'mid', dls=dls); mid.fit_iters(6); mid.save_checkpoint()
    res = learner(t, [TeacherDiscriminatorLoss(t.D, start=4, reset_opt=True)], seed=7, dls=dls); res.fit_iters(8, resume=tmp_path/'mid'/CKPT_NAME)
    assert steps(res) == (4, 4) and same(whole.G.state_dict(), res.G.state_dict())
    # stage 2 as its own run from a stage-1 checkpoint starts with fresh optimizers, as the authors' second stage does
    s1 = learner(t, [], run_dir=tmp_path/'s1', dls=dls); s1.fit_iters(4); s1.save_checkpoint()
    s2 = learner(t, [TeacherDiscriminatorLoss(t.D, start=0, reset_opt=True)], seed=9, dls=dls); s2.fit_iters(8, resume=tmp_path/'s1'/CKPT_NAME)
    assert steps(s2) == (4, 4) and same(whole.G.state_dict(), s2.G.state_dict())

def test_kd_term_gradient_and_composition(teacher_ckpt, dls):
    "G's gradient is the vanilla one plus λ_KD times the KD term's; with the D term as well, the two add up."
    t = load_teacher(teacher_ckpt, dls)
    class KDProbe(Callback):
        order, checked = 6, 0
        def after_loss(self):
            if self.learn.phase != 'G' or not kd.active: return
            L, fake = self.learn.loss_func, self.learn.fake
            with torch.no_grad(): target = t.G(self.learn.z)
            want = L.g_loss(self.learn.fake_pred) + .5 * (fake - target).abs().mean() + .1 * L.g_loss(t.D(fake))
            torch.testing.assert_close(self.learn.loss_grad, want); KDProbe.checked += 1
    kd = TeacherGeneratorLoss(t.G, lam=.5, start=2)
    l = learner(t, [TeacherDiscriminatorLoss(t.D, start=2), kd, KDProbe()], dls=dls); l.fit_iters(6)
    assert KDProbe.checked == 4 and [r['kd_on'] for r in l.history.rows] == [0., .5, .5]
    assert not any(p.requires_grad or p.grad is not None for p in t.G.parameters())

def test_history_columns(teacher_ckpt, dls):
    "loss_teacher and lam_on reach every row of history.csv, the last one too when training ends between logging steps."
    t = load_teacher(teacher_ckpt, dls)
    learn = learner(t, [TeacherDiscriminatorLoss(t.D, start=3)], dls=dls); learn.fit_iters(5)
    rows = learn.history.rows
    assert [(r['iter'], r['lam_on']) for r in rows] == [(2, 0.), (4, .1), (5, .1)]
    assert all(r['loss_teacher'] > 0 for r in rows)
