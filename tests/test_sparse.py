"Invariants of sparse training (masks, exploration, baselines), bad input, exact resume and composition with EMA and checkpoints."
import csv, math
import pytest, torch
from torch import nn
from fastai.callback.core import Callback
from sparse_gan_nb.core import set_seed, save_state, read_checkpoint, CKPT_NAME, CKPT_KIND
from sparse_gan_nb.data import gan_dls
from sparse_gan_nb.models import get_models
from sparse_gan_nb.learner import GANLearner, CheckpointCallback
from sparse_gan_nb.masks import SparseMasks, maskable_layers, layer_densities, erk_densities
from sparse_gan_nb.sparse import (SparseMaskCallback, SparseStatsCallback, Explore, Static, topology_update, opt_slots, zero_new_slots,
                                  mask_slots, stu_callback, OPT_POLICIES)
from sparse_gan_nb.baselines import GMPSchedule, snip, train_imp, lth_densities

torch.set_num_threads(1)

class Checker(Callback):
    "Checks the step invariants on every optimizer step and every topology update."
    order = 99
    def before_fit(self): self.n_steps, self.updates = 0, []
    def _cbs(self): return [c for c in (getattr(self.learn, 'sparse_g', None), getattr(self.learn, 'sparse_d', None)) if c is not None]
    def before_step(self):
        self.before = {c.net: [m.clone() for m in c.sparse.masks.values()] for c in self._cbs()}
        self.n_upd = {c.net: len(c.updates) for c in self._cbs()}
    def after_step(self):
        self.n_steps += 1
        for c in self._cbs():
            for p, m in zip(c.sparse.params, c.sparse.masks.values()):
                assert not p[m == 0].any(), f'a masked weight of {c.net} is not zero after a {self.learn.phase} step'
            before, after = self.before[c.net], list(c.sparse.masks.values())
            if c.net != self.learn.phase:
                assert all(torch.equal(a, b) for a, b in zip(before, after)), f'a {self.learn.phase} step changed the mask of {c.net}'
            elif len(c.updates) > self.n_upd[c.net] and not isinstance(c.schedule, GMPSchedule):
                grown = [(a.bool() & ~b.bool()) for a, b in zip(after, before)]
                pruned = [(b.bool() & ~a.bool()) for a, b in zip(after, before)]
                assert all(not (g & b.bool()).any() for g, b in zip(grown, before))  # regrown were inactive before
                n_b, n_a = [int(b.sum()) for b in before], [int(a.sum()) for a in after]
                if c.schedule.scope == 'layer': assert n_b == n_a, (n_b, n_a)
                else: assert sum(n_b) == sum(n_a)
                assert sum(int(g.sum()) for g in grown) == sum(int(p.sum()) for p in pruned) > 0
                self.updates.append((c.net, self.learn.g_step))

SCHEDULE_KW = ('delta_t', 'p0', 'p_min', 't_max', 'stop', 'growth', 'prune', 'scope', 'regrow_pruned')

def mask_cb(net, explore=True, **kw):
    "A mask callback whose keyword arguments may include `Explore`'s (delta_t, growth, scope, ...)."
    sched = {k: kw.pop(k) for k in SCHEDULE_KW if k in kw}
    return SparseMaskCallback(net, schedule=Explore(**sched) if explore else Static(), **kw)

def make(run_dir=None, seed=0, g_kw=None, d_kw=None, width=.25, n_critic=1, ema=.9, extra=(), model='dcgan', data='digits', **kw):
    set_seed(seed)
    G, D = get_models(model, nz=16, img_size=16, nc=1, width=width) if model != 'mlp' else get_models('mlp')
    cbs = [mask_cb('G', **{**dict(density=.1, delta_t=3, seed=seed), **(g_kw or {})}),
           mask_cb('D', **{**dict(density=.5, explore=False, seed=seed), **(d_kw or {})}),
           SparseStatsCallback(br_every=2), Checker(), *extra]
    dls = gan_dls(data, bs=16, seed=seed, **({} if data == 'ring8' else dict(size=16)))
    return GANLearner(dls, G, D, n_critic=n_critic, ema=ema, run_dir=run_dir, log_every=4, cbs=cbs, **kw)

def masks_of(learn, net='g'): return [m.clone() for m in getattr(learn, f'sparse_{net}').sparse.masks.values()]

# ---------------------------------------------------------------- step invariants
@pytest.mark.parametrize('g_kw,d_kw', [
    (dict(growth='gradient'), dict()),                                          # STU-GAN
    (dict(growth='random', opt_policy='keep'), dict()),                         # SET, the paper's Adam policy
    (dict(scope='global', opt_policy='mask_all'), dict()),                      # ADAPT-style global exploration
    (dict(growth='gradient'), dict(explore=True, growth='random', delta_t=2)),  # G and D explored ('GD')
    (dict(growth='gradient'), dict(explore=True, growth='gradient', delta_t=4, opt_policy='mask_all')),
    (dict(growth='gradient', regrow_pruned=True, opt_policy='keep'), dict()),      # the authors' STU-GAN
    (dict(growth='random', regrow_pruned=True, scope='global'), dict()),
])
def test_step_invariants(g_kw, d_kw):
    learn = make(g_kw=g_kw, d_kw=d_kw, n_critic=2)
    learn.fit_iters(12)
    ck = learn.checker
    assert ck.n_steps == 12 * 3
    assert {n for n, _ in ck.updates} == ({'G', 'D'} if d_kw.get('explore') else {'G'})
    assert [u['iter'] for u in learn.sparse_g.updates] == [3, 6, 9, 12]
    if d_kw.get('explore'): assert learn.sparse_d.updates and all(u['iter'] % d_kw['delta_t'] == 0 for u in learn.sparse_d.updates)
    for c in (learn.sparse_g, learn.sparse_d):  # the density never moves, and no layer goes above 1
        assert all(0 < d <= 1 for d in c.sparse.densities().values())
        assert abs(c.sparse.density - c.density) * sum(c.sparse.numel.values()) <= len(c.sparse.names)

def test_global_scope_moves_weights_between_layers_but_keeps_total():
    learn = make(g_kw=dict(scope='global', delta_t=2, growth='random'))
    learn.fit_iters(10)
    nnz = [u['nnz'] for u in learn.sparse_g.updates]
    assert len({sum(n.values()) for n in nnz}) == 1

def test_stop_and_t_max():
    learn = make(g_kw=dict(delta_t=3, stop=7, t_max=6, p0=.4))
    learn.fit_iters(12)
    ups = learn.sparse_g.updates
    assert [u['iter'] for u in ups] == [3, 6]
    assert ups[0]['p'] == pytest.approx(.005 + .5 * (.4 - .005)) and ups[1]['p'] == pytest.approx(.005)

def test_masked_weights_zero_and_sparse_ema():
    learn = make(g_kw=dict(delta_t=2), ema=.5)
    learn.fit_iters(9)
    cb = learn.sparse_g
    named = dict(learn.G_ema.named_parameters())
    for k, m in cb.sparse.masks.items():
        e = named[cb.sparse.param_names[k]]
        assert not e[m == 0].any()                            # pruned weights left the EMA at once
    # the update at step 8 grew weights; at step 9 they entered the EMA at their live value
    learn2 = make(g_kw=dict(delta_t=2), ema=.5)
    learn2.fit_iters(8)
    new = learn2.sparse_g.pending_new
    assert new is not None and any(n.any() for n in new)
    learn2.fit_iters(9)
    named = dict(learn2.G_ema.named_parameters())
    for k, n, p in zip(learn2.sparse_g.sparse.names, new, learn2.sparse_g.sparse.params):
        e = named[learn2.sparse_g.sparse.param_names[k]]
        assert torch.allclose(e[n], p.detach()[n])  # E = W at the new positions after the EMA update

def test_regrow_pruned():
    "A weight pruned in an update may be grown back in it, at its old value; counts are kept as without."
    torch.manual_seed(0)
    w = torch.randn(200)
    for scope in ('layer', 'global'):
        m = (torch.rand(200) < .3).float(); w0 = w * m; n0 = int(m.sum())
        score = w0.abs() + .01 * torch.rand(200)  # the gradient is largest where the weights are: the pruned ones come back
        (drop, grow), = topology_update([w0], [m], .5, [score], scope, regrow_pruned=True)
        back = set(drop.tolist()) & set(grow.tolist())
        assert back and int(m.sum()) == n0 and all(m[i] == 1 and (w0 * m)[i] == w0[i] != 0 for i in back)
    learn = make(g_kw=dict(regrow_pruned=True, delta_t=2)); learn.fit_iters(6)
    plain = make(g_kw=dict(delta_t=2)); plain.fit_iters(6)
    assert learn.sparse_g.itop() <= plain.sparse_g.itop()  # fewer new positions per update
    assert sum(u['n_regrown'] for u in learn.sparse_g.updates) < sum(u['n_regrown'] for u in plain.sparse_g.updates)

def test_stu_callback_is_the_authors_method():
    learn = make(model='sngan', g_kw=dict(density=.2))
    learn.remove_cb(learn.sparse_g); learn.add_cb(stu_callback(.2, delta_t=2)); learn.fit_iters(4)
    cb = learn.sparse_g
    assert 'l1' not in cb.sparse.names and cb.schedule.regrow_pruned and cb.opt_policy == 'keep' and len(cb.updates) == 2
    with pytest.raises(ValueError, match="stu_callback fixes conv_only to the authors' choice"): stu_callback(conv_only=False)

def _first_step(policy, betas, steps=5000, lr=1e-3):
    "The first Adam step, in units of lr, of a weight regrown after `steps` inactive steps, under `policy` (or the old 'zero both')."
    w = nn.Parameter(torch.zeros(2)); opt = torch.optim.Adam([w], lr=lr, betas=betas)
    mask = torch.tensor([1., 0.])
    for _ in range(steps):
        w.grad = torch.ones(2); opt.step()
        with torch.no_grad(): w.mul_(mask)
        if policy == 'mask_all': mask_slots(opt, [w], [mask])
    mask[1] = 1
    if policy == 'zero_new': zero_new_slots(opt, [w], [torch.tensor([False, True])])
    if policy == 'zero both': [s[1].zero_() for s in opt_slots(opt, w)]
    w.grad = torch.ones(2); opt.step()  # the same gradient as before: 'keep' steps like an old weight
    return abs(w[1].item()) / lr

@pytest.mark.parametrize('betas', [(.5, .999), (0., .999)])
def test_first_adam_step_of_a_regrown_weight(betas):
    "Late in a run, zeroing both Adam moments makes a regrown weight's first step (1-β1)/sqrt(1-β2) lr (15.8 lr, 31.6 lr); the fixed 'zero_new' does not."
    blowup = (1 - betas[0]) / math.sqrt(1 - betas[1])
    step = {pol: _first_step(pol, betas) for pol in OPT_POLICIES + ('zero both',)}
    assert step['zero both'] == pytest.approx(blowup, rel=.02) and step['mask_all'] == pytest.approx(blowup, rel=.02)
    assert step['keep'] == pytest.approx(1, rel=.02)             # warm moments: an ordinary Adam step
    assert step['zero_new'] == pytest.approx(1 - betas[0], rel=.02) and step['zero_new'] < blowup / 10

def test_opt_policies():
    for policy in ('zero_new', 'mask_all', 'keep'):
        learn = make(g_kw=dict(delta_t=4, opt_policy=policy), ema=None)
        learn.fit_iters(3)
        before = masks_of(learn)
        learn.fit_iters(4)  # the update happens at the end of step 4
        cb = learn.sparse_g
        for p, m, b in zip(cb.sparse.params, cb.sparse.masks.values(), before):
            new = m.bool() & ~b.bool()
            slots = opt_slots(learn.opt_G, p)
            assert len(slots) == 2
            if policy == 'zero_new':  # the first moment is reset, the second kept
                (m1,), (m2,) = opt_slots(learn.opt_G, p, ('exp_avg',)), opt_slots(learn.opt_G, p, ('exp_avg_sq',))
                assert not m1[new].any() and (not new.any() or m2[new].abs().sum() > 0)
            if policy == 'mask_all': assert all(not s[m == 0].any() for s in slots)
            if policy == 'keep' and new.any(): assert any(s[new].abs().sum() > 0 for s in slots)

# ---------------------------------------------------------------- masks
def test_same_seed_same_masks_through_training():
    def run(seed):
        l = make(seed=seed, g_kw=dict(growth='random')); l.fit_iters(7); return l
    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(x, y) for x, y in zip(masks_of(a), masks_of(b)))
    assert all(torch.equal(x, y) for x, y in zip(masks_of(a, 'd'), masks_of(b, 'd')))
    assert not all(torch.equal(x, y) for x, y in zip(masks_of(a), masks_of(c)))
    for sampling in ('exact', 'bernoulli'):
        G1, G2 = (get_models('sngan', img_size=16, nc=1, width=.25)[0] for _ in range(2))
        m1, m2 = SparseMasks(G1, .2, seed=5, sampling=sampling), SparseMasks(G2, .2, seed=5, sampling=sampling)
        assert all(torch.equal(x, y) for x, y in zip(m1.masks.values(), m2.masks.values()))

@pytest.mark.parametrize('name', ['dcgan', 'sngan', 'biggan', 'mlp'])
@pytest.mark.parametrize('density', [0.01, 0.05, 0.1, 0.2, 0.5, 0.9, 1.0])
def test_erk_never_above_one_and_exact_count(name, density):
    G, D = get_models(name, img_size=16, nc=1, width=.5, **(dict(n_classes=10) if name == 'biggan' else {}))
    for net in (G, D):
        for dist in ('erk', 'uniform'):
            sm = SparseMasks(net, density, dist, seed=0)
            assert all(0 < d <= 1 for d in sm.target.values()) and all(0 < d <= 1 for d in sm.densities().values())
            N = sum(sm.numel.values())
            assert abs(sum(sm.nnz().values()) - density * N) <= len(sm.names), (name, dist)

def test_custom_layers_grouped_conv1d_and_old_spectral_norm():
    "Masks work on a user's own modules: Conv1d, grouped convs, ConvTranspose2d, Linear, the old spectral-norm hook."
    net = nn.Sequential(nn.Conv1d(4, 8, 3, groups=2), nn.ReLU(), nn.utils.spectral_norm(nn.Linear(8, 6)),
                        nn.Embedding(3, 2), nn.LayerNorm(6))
    lay = maskable_layers(net)
    assert list(lay) == ['0', '2'] and lay['2'] is net[2].weight_orig
    sm = SparseMasks(net, .3, 'uniform')
    with torch.no_grad(): net[2](torch.randn(2, 8))  # the hook recomputes weight from weight_orig
    assert not net[2].weight[sm.masks['2'] == 0].any()
    ct = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, groups=2), nn.Conv2d(6, 6, 3, groups=3))
    sm = SparseMasks(ct, .25)
    assert {k: tuple(m.shape) for k, m in sm.masks.items()} == {'0': (4, 3, 3, 3), '1': (6, 2, 3, 3)}

def test_parametrized_spectral_norm_is_masked_at_original():
    G, D = get_models('sngan', img_size=16, nc=1, width=.25)
    sm = SparseMasks(D, .3)
    c1 = D.blocks[0].c1
    assert sm.layers['blocks.0.c1'] is c1.parametrizations.weight.original
    assert not c1.weight[sm.masks['blocks.0.c1'] == 0].any()

def test_sngan_train_with_spectral_norm_d_explored():
    set_seed(0)
    G, D = get_models('sngan', img_size=16, nc=1, width=.125)
    cbs = [mask_cb('G', density=.1, conv_only=True, delta_t=2), mask_cb('D', density=.5, delta_t=2, growth='random'), Checker()]
    learn = GANLearner(gan_dls('digits', bs=8, size=16), G, D, ema=.9, cbs=cbs)
    learn.fit_iters(4)
    assert learn.checker.n_steps == 8 and len(learn.checker.updates) >= 3
    assert 'l1' not in learn.sparse_g.sparse.names  # conv_only leaves G's linear layer dense

# ---------------------------------------------------------------- reports
def test_history_and_summary(tmp_path):
    learn = make(tmp_path/'run')
    learn.fit_iters(8)
    header = (tmp_path/'run'/'history.csv').read_text().splitlines()[0].split(',')
    for col in ('G_density', 'G_itop', 'G_drop', 'D_density', 'D_itop', 'train_flops_G', 'train_flops_D', 'train_flops',
                'infer_flops_G', 'br', 'G_density[net.0]', 'D_density[net.2]'):
        assert col in header, col
    s = learn.sparse_stats.summary()
    assert s['itop_G'] > s['density_G'] and s['itop_D'] == pytest.approx(s['density_D'])
    assert 0 < s['train_flops_G'] < s['train_flops_D'] < 1
    assert s['stored_params_G'] < s['params_G']
    dense = GANLearner(gan_dls('digits', bs=16, size=16), *get_models('dcgan', nz=16, img_size=16, nc=1, width=.25),
                       cbs=[SparseStatsCallback(br_every=2)])
    dense.fit_iters(4)
    sd = dense.sparse_stats.summary()
    assert sd['train_flops'] == 1. and sd['itop_G'] == 1. and sd['stored_params_D'] == sd['params_D'] and 'br' in sd

# ---------------------------------------------------------------- baselines
def test_gmp_snip_imp():
    learn = make(g_kw=dict(density=.1), extra=())
    learn.remove_cb(learn.sparse_g); learn.add_cb(SparseMaskCallback('G', .1, schedule=GMPSchedule(delta_t=2)))
    learn.fit_iters(20)
    assert learn.sparse_g.sparse.density == pytest.approx(.1, abs=2e-3) and learn.sparse_g.itop() == 1.
    learn = make()
    learn.remove_cb(learn.sparse_g); learn.add_cb(SparseMaskCallback('G', masks=snip(.2)))
    learn.fit_iters(3)
    assert learn.sparse_g.sparse.density == pytest.approx(.2, abs=1e-3)
    ls = train_imp(_imp_learner, 4, density=.1, rounds=2)
    assert [round(l.sparse_g.sparse.density, 2) for l in ls][::2] == [1., .1]

def test_global_gmp_and_gan_lth_imp():
    learn = make()
    learn.remove_cb(learn.sparse_g); learn.add_cb(SparseMaskCallback('G', .1, schedule=GMPSchedule(delta_t=2, scope='global'), conv_only=True))
    learn.fit_iters(20)
    cb = learn.sparse_g
    assert cb.sparse.density == pytest.approx(.1, abs=2e-3) and min(cb.sparse.nnz().values()) >= 1
    assert lth_densities(.1)[1:3] == [.8, .8 ** 2] and len(lth_densities(.1)) == 12
    ls = train_imp(_imp_learner, 3, density=.6, schedule='lth')
    assert [round(l.sparse_g.sparse.density, 3) for l in ls] == [1., .8, .64, .6]
    with pytest.raises(ValueError, match="unknown schedule='magnitude'; choose one of 'geometric', 'lth'"): train_imp(_imp_learner, 3, schedule='magnitude')

def _imp_learner(cb):
    learn = make()
    learn.remove_cb(learn.sparse_g); learn.add_cb(cb)
    return learn

# ---------------------------------------------------------------- resume and composition
@pytest.mark.parametrize('stop', [8, 6])  # at a logged row (log_every=4), or between two; between updates of G (3) and D (4)
def test_exact_resume_with_masks_ema_checkpoint(tmp_path, stop):
    kw = dict(g_kw=dict(growth='random', delta_t=3, t_max=20, opt_policy='mask_all'), d_kw=dict(explore=True, growth='random', delta_t=4, t_max=20),
              n_critic=2, ema=.8)
    ck = lambda: [CheckpointCallback(every=stop)]
    full = make(tmp_path/'full', extra=ck(), **kw); full.fit_iters(20)
    part = make(tmp_path/'part', extra=ck(), **kw); part.fit_iters(stop)
    res = make(tmp_path/'part', extra=ck(), **kw); res.fit_iters(20, resume=tmp_path/'part'/CKPT_NAME)
    for a, b in ((full.G, res.G), (full.D, res.D), (full.G_ema, res.G_ema)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    for n in ('g', 'd'):
        assert all(torch.equal(x, y) for x, y in zip(masks_of(full, n), masks_of(res, n)))
        fa, fb = getattr(full, f'sparse_{n}'), getattr(res, f'sparse_{n}')
        assert all(torch.equal(x, y) for x, y in zip(fa.fired, fb.fired)) and fa.updates == fb.updates
        assert torch.equal(fa.gen.get_state(), fb.gen.get_state())
    strip = lambda rows: [{k: v for k, v in r.items() if k != 'time'} for r in rows]
    assert strip(full.history.rows) == strip(res.history.rows)
    assert full.sparse_stats.summary() == res.sparse_stats.summary()

def test_resume_at_an_update_step(tmp_path):
    "A checkpoint right after an update holds the pending new weights of the sparse EMA."
    kw = dict(g_kw=dict(delta_t=5, t_max=8), ema=.8)  # t_max: the interrupted run must have the schedule of the full one
    full = make(tmp_path/'a', extra=[CheckpointCallback(every=5)], **kw); full.fit_iters(8)
    part = make(tmp_path/'b', extra=[CheckpointCallback(every=5)], **kw); part.fit_iters(5)
    assert part.sparse_g.pending_new is not None
    res = make(tmp_path/'b', extra=[CheckpointCallback(every=5)], **kw); res.fit_iters(8, resume=tmp_path/'b'/CKPT_NAME)
    assert all(torch.equal(x, y) for x, y in zip(full.G_ema.state_dict().values(), res.G_ema.state_dict().values()))

# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize('kw,msg', [
    (dict(density=0), 'density must be a number in (0, 1]'), (dict(density=-.1), 'density must be a number in (0, 1]'),
    (dict(density=1.01), 'density must be a number in (0, 1]'), (dict(density=float('nan')), 'density must be a number in (0, 1]'),
    (dict(delta_t=0), 'delta_t must be a whole number > 0'), (dict(delta_t=-5), 'delta_t must be a whole number > 0'),
    (dict(growth='momentum'), "unknown growth='momentum'; choose one of 'gradient', 'random'"),
    (dict(prune='snip'), "unknown prune='snip'; choose one of 'magnitude'"),
    (dict(distribution='er'), "unknown distribution='er'; choose one of 'erk', 'uniform'"),
    (dict(opt_policy='reset'), "unknown opt_policy='reset'; choose one of 'keep', 'zero_new', 'mask_all'"),
    (dict(scope='net'), "unknown scope='net'; choose one of 'layer', 'global'"),
    (dict(sampling='poisson'), "unknown sampling='poisson'; choose one of 'exact', 'bernoulli'"),
    (dict(stop=-2), 'stop must be a G-step count (an int >= 0) or a fraction of the run'),
    (dict(t_max=1.5), 't_max must be a G-step count (an int >= 0) or a fraction of the run'),
])
def test_bad_settings(kw, msg):
    with pytest.raises(ValueError) as e: mask_cb('G', **kw)
    assert msg in str(e.value)

def test_bad_models_and_checkpoints(tmp_path):
    with pytest.raises(ValueError, match='has no maskable layers'): SparseMasks(nn.Sequential(nn.BatchNorm1d(3)))
    with pytest.raises(ValueError, match="distribution\\['0'\\] must be a number in \\(0, 1\\]"): SparseMasks(nn.Sequential(nn.Linear(2, 2)), distribution={'0': 2.})
    learn = make(data='ring8', model='mlp', g_kw=dict(conv_only=True))
    with pytest.raises(ValueError, match='has no maskable layers'): learn.fit_iters(1)
    part = make(tmp_path/'p', extra=[CheckpointCallback(every=3)]); part.fit_iters(3)
    ck = read_checkpoint(tmp_path/'p'/CKPT_NAME)
    ck['callbacks']['sparse_d']['masks']['masks'].pop('net.2'); save_state(ck, tmp_path/'bad.safetensors', CKPT_KIND)
    with pytest.raises(ValueError, match="checkpoint state of sparse_d: masks do not fit the model: no mask for layer 'net.2'"):
        make(extra=[CheckpointCallback(every=3)]).load_checkpoint(tmp_path/'bad.safetensors')
    with pytest.raises(ValueError, match='p_min must be <= p0'): Explore(p0=.1, p_min=.3)
    with pytest.raises(ValueError, match='start must be before end'): GMPSchedule(start=.8, end=.5)
    gmp = make(); gmp.remove_cb(gmp.sparse_g); gmp.add_cb(SparseMaskCallback('G', .1, schedule=GMPSchedule(start=30, end=20)))
    with pytest.raises(ValueError, match=r'GMP: start \(G step 30\) must be before end \(G step 20\)'): gmp.fit_iters(40)

# ---------------------------------------------------------------- the experiment notebook
@pytest.mark.parametrize('params', [
    dict(n_iter=6, delta_t=2, eval_n=100, eval_every=3, eval_metrics='fid,is'),            # STU-GAN, evaluated during training
    dict(n_iter=4, method='imp', imp_rounds=1, eval_n=None, explore='GD'),                  # lottery tickets: 2 trainings
    dict(n_iter=2, method='imp', imp_schedule='lth', d_G=.5, eval_n=100, eval_metrics='fid'),  # GAN-LTH: 5 trainings, the last evaluated
    dict(n_iter=8, method='gmp', delta_t=2, eval_n=None, d_D=1.0),                          # GMP beside a dense D
    dict(n_iter=4, method='stu', delta_t=2, eval_n=None, model='sngan', nz=16),            # the authors' STU-GAN preset
])
def test_experiment_notebook(tmp_path, params):
    from sparse_gan_nb.experiment import run_notebook
    tiny = dict(width=.25, d_width=.25, bs=32, log_every=2, sample_every=4, ckpt_every=4, br_every=2)
    res = run_notebook('stu_gan', tmp_path/'run', tiny | params)
    m = res['metrics']
    assert m['iterations'] == params['n_iter'] and 0 < m['train_flops_G'] <= 1 and m['train_flops_vs_dense'] > 0
    if params.get('eval_n') and params.get('method') == 'imp':  # the final ticket's training is the one evaluated and kept
        assert m['fid'] > 0 and m['trainings'] == 5 and m['density_G'] == pytest.approx(.5, abs=2e-3)
        assert sorted(p.name for p in (tmp_path/'run').glob('round_*')) == ['round_0', 'round_1', 'round_2', 'round_3']
    elif params.get('eval_n'):
        assert m['fid'] > 0 and m['is_mean'] > 1
        fids = {int(r['iter']): float(r['fid']) for r in csv.DictReader(open(tmp_path/'run'/'history.csv')) if r.get('fid')}
        assert sorted(fids) == [3, 6] and fids[6] == pytest.approx(m['fid'])  # FID over training, in history.csv
        assert m['fid_best'] == pytest.approx(min(fids.values())) and fids[m['fid_best_iter']] == pytest.approx(m['fid_best'])
    if params.get('method') == 'imp':
        assert m['train_flops_vs_dense'] > 1 and m['trainings'] == (5 if params.get('imp_schedule') == 'lth' else 2)
        assert (tmp_path/'run'/'round_0'/'history.csv').exists()
    else: assert m['trainings'] == 1
    if params.get('method') == 'gmp': assert m['itop_G'] == 1. and m['density_G'] == pytest.approx(.1, abs=2e-3) and m['density_D'] == 1.
    if params.get('method') == 'stu': assert 'l1' not in m['layer_density_G'] and 'l_out' not in m['layer_density_D'] and m['itop_G'] > .1

def test_experiment_evaluation_leaves_training_alone(tmp_path):
    "Evaluating during training (building the evaluator included) does not move the training's random stream."
    from sparse_gan_nb.experiment import run_notebook
    tiny = dict(width=.25, d_width=.25, bs=32, n_iter=6, delta_t=2, log_every=2, sample_every=6, ckpt_every=6, dataset='stacked_digits')
    losses = lambda d: [(r['loss_d'], r['loss_g']) for r in csv.DictReader(open(d/'history.csv')) if r['loss_d']]
    run_notebook('stu_gan', tmp_path/'quiet', tiny | dict(eval_n=None))
    run_notebook('stu_gan', tmp_path/'evaluated', tiny | dict(eval_n=200, eval_every=2))
    assert losses(tmp_path/'quiet') == losses(tmp_path/'evaluated') and len(losses(tmp_path/'quiet')) == 3

def test_experiment_notebook_bad_parameter(tmp_path):
    from sparse_gan_nb.experiment import run_notebook
    with pytest.raises(ValueError, match="unknown explore='G\\+D'; choose one of 'G', 'D', 'GD', 'none'"):
        run_notebook('stu_gan', tmp_path/'bad', dict(explore='G+D'))
    assert not (tmp_path/'bad').exists()  # refused before anything was made
