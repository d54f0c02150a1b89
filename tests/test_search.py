"alphaGAN end to end: exact resume of a search, the search and retrain notebooks through `sgn`, a searched generator trained sparse and distilled, the second-order option, and bad genotypes."
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch
from sparse_gan_nb.core import set_seed, CKPT_NAME
from sparse_gan_nb.data import gan_dls
from sparse_gan_nb.models import get_models
from sparse_gan_nb.learner import GANLearner, CheckpointCallback
from sparse_gan_nb.evaluate import generator_from_checkpoint
from sparse_gan_nb.experiment import run_notebook
from sparse_gan_nb.search import (ArchitectureSearch, DerivedGenerator, Genotype, PUBLISHED, split_train, worst_case, gan_value,
                                  genotype_params)

ROOT = Path(__file__).resolve().parents[1]

def sgn(*args):
    exe = Path(sys.executable).parent/'sgn'
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'))

def flags(d): return [a for k, v in d.items() for a in ('-p', k, str(v))]

def same(a, b):
    if isinstance(a, torch.Tensor): return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b

def search_learner(run_dir, **kw):
    set_seed(0)
    dw, arch = split_train(gan_dls('digits', bs=16, size=16, seed=0))
    G, D = get_models('alphagan_super', nz=32, img_size=16, nc=1, width=1/64, d_width=1/8)
    search = ArchitectureSearch.from_preset(arch, 'smoke', seed=3, **({'worst_decay_at': 2} | kw))
    return GANLearner(dw, G, D, betas=(0., .9), n_critic=5, ema=None, log_every=1, run_dir=run_dir,
                      cbs=[search] + ([CheckpointCallback()] if run_dir else [])), search

def state(learn, search):
    rows = [{k: v for k, v in r.items() if k != 'time'} for r in learn.history.rows]
    return dict(G=learn.G.state_dict(), D=learn.D.state_dict(), opts={k: s.opt.state_dict() for k, s in learn.steps.items()},
                rows=rows, rounds=search.rounds, alphas=search.alphas, genotypes=search.genotypes, iters=dict(learn.step_iters))

def test_search_stopped_and_resumed_equals_uninterrupted(tmp_path):
    full, s_full = search_learner(tmp_path/'full'); full.fit_iters(6)
    part, s_part = search_learner(tmp_path/'part'); part.fit_iters(3)
    assert len(s_part.rounds) == 3
    again, s_again = search_learner(tmp_path/'part'); again.fit_iters(6, resume=tmp_path/'part'/CKPT_NAME)
    a, b = state(full, s_full), state(again, s_again)
    assert len(s_again.rounds) == 6 and a['iters'] == b['iters'] == dict(D=30, G=6, arch=12)
    for k in a: assert same(a[k], b[k]), k  # α, G and D (weights and buffers), all three optimizers, history, logs
    assert (tmp_path/'full'/'genotype.json').read_text() == (tmp_path/'part'/'genotype.json').read_text()

def test_unrolled_with_no_virtual_step_is_first_order():
    "With xi = 0 the virtual weights are the weights and the second-order term vanishes: the α gradient is the first-order one."
    learn, search = search_learner(None, unrolled=True, xi=0.)
    learn.fit_iters(1)
    G, D = learn.G, learn.D.eval()  # D in eval mode: its spectral-norm vectors stay put between the two evaluations
    x, z = search.draw()
    m_un, corr = search.unrolled_value(x, z, D)
    with G.arch_mode(search.noise): m_fo = gan_value(G, D, x, z, learn.loss_func)
    A = G.arch_parameters()
    g_un, g_fo = torch.autograd.grad(m_un, A), torch.autograd.grad(m_fo, A)
    assert all(torch.allclose(u, f, atol=1e-7) for u, f in zip(g_un, g_fo)) and all(not c.any() for c in corr)
    assert any(f.abs().sum() > 0 for f in g_fo)

def test_unrolled_and_gumbel_searches_run(tmp_path):
    for kw in (dict(unrolled=True), dict()):
        learn, search = search_learner(None, **kw)
        if not kw: learn.G.gumbel_t = 1.
        a0 = [a.detach().clone() for a in learn.G.arch_parameters()]
        learn.fit_iters(3)
        assert len(search.rounds) == 3 and all(torch.isfinite(torch.tensor(r['dg'])) for r in search.rounds)
        assert not same(a0, [a.detach() for a in learn.G.arch_parameters()])

def test_worst_case_leaves_the_pair_alone():
    set_seed(0)
    G, D = get_models('mlp', width=.25)
    before = [p.detach().clone() for p in list(G.parameters()) + list(D.parameters())]
    Gw, Dw = worst_case(G, D, lambda: (torch.randn(32, 2), torch.randn(32, 2)), 5)
    assert same(before, [p.detach() for p in list(G.parameters()) + list(D.parameters())])
    assert not same([p.detach() for p in Dw.parameters()], before[len(list(G.parameters())):])

@pytest.fixture(scope='module')
def searched(tmp_path_factory):
    "A smoke search made through the command line."
    out = tmp_path_factory.mktemp('alphagan')/'search'
    r = sgn('run', 'alphagan_search', out)
    assert r.returncode == 0, r.stderr
    return out

def test_search_run_folder(searched):
    names = {p.name for p in searched.iterdir()}
    assert {'genotype.json', 'alphas.json', 'search.csv', 'history.csv', CKPT_NAME, 'metrics.json'} <= names
    g = Genotype.load(searched/'genotype.json')
    info = json.loads((searched/'genotype.json').read_text())['info']
    assert info['params'] == genotype_params(g, nz=32, img_size=16, nc=1, width=1/64) and set(info['margins']) == set(g.ops)
    m = json.loads((searched/'metrics.json').read_text())['metrics']
    assert m['rounds'] == 3 and m['genotype'] == g.ops and 0 < m['alpha_entropy'] <= 1
    a = json.loads((searched/'alphas.json').read_text())
    assert len(a['alphas']) == 3 and a['genotypes'][0]['round'] == 1
    assert len((searched/'search.csv').read_text().splitlines()) == 1 + 3

def test_retrain_the_searched_genotype_then_eval(searched, tmp_path):
    out = tmp_path/'retrain'
    p = dict(model='alphagan', genotype=searched/'genotype.json', width=1/16, d_width=1/8, n_iter=6, bs=16, beta1=0., beta2=.9,
             log_every=3, sample_every=6, ckpt_every=6, eval_n=200)
    r = sgn('run', 'dense_baseline', out, *flags(p))
    assert r.returncode == 0, r.stderr
    G, cfg = generator_from_checkpoint(out/CKPT_NAME)
    assert isinstance(G, DerivedGenerator) and G.genotype() == Genotype.load(searched/'genotype.json') and G.C == 16
    (searched/'genotype.json').rename(searched/'moved.json')  # the checkpoint holds the ops, not the file's path
    try:
        r = sgn('eval', out/CKPT_NAME, '--n', 200)
        assert r.returncode == 0 and 'fid' in json.loads(r.stdout), r.stderr
    finally: (searched/'moved.json').rename(searched/'genotype.json')

def test_searched_generator_trains_sparse(tmp_path):
    m = run_notebook('stu_gan', tmp_path/'stu', dict(model='alphagan', genotype='alphaGAN_s', width=1/16, d_width=1/8, n_iter=8, bs=16,
                                                    d_G=.2, delta_t=4, log_every=4, sample_every=8, ckpt_every=8, eval_n=None))['metrics']
    assert abs(m['density_G'] - .2) < .01 and m['iterations'] == 8
    G, _ = generator_from_checkpoint(tmp_path/'stu'/CKPT_NAME)
    assert G.genotype() == PUBLISHED['alphaGAN_s']

def test_searched_teacher_distills(tmp_path):
    m = run_notebook('dgl_gan', tmp_path/'dgl', dict(teacher_model='alphagan', genotype='alphaGAN_l', teacher_iters=4, n_iter=6, bs=16,
                                                    width_mult=.5, log_every=3, sample_every=6, ckpt_every=6, eval_n=None))['metrics']
    G, cfg = generator_from_checkpoint(tmp_path/'dgl'/CKPT_NAME)
    teacher, _ = generator_from_checkpoint(tmp_path/'dgl'/'teacher'/CKPT_NAME)
    assert isinstance(G, DerivedGenerator) and G.genotype() == PUBLISHED['alphaGAN_l'] and G.C * 2 == teacher.C
    assert m['iterations'] == 6

@pytest.mark.parametrize('args,msg', [
    (('-p', 'model', 'alphagan'), "model='alphagan' is a searched generator: give genotype"),
    (('-p', 'model', 'alphagan', '-p', 'genotype', '/no/such/genotype.json'), 'genotype must be a published genotype'),
    (('-p', 'genotype', 'alphaGAN_s'), "genotype is for model='alphagan'; model='dcgan' takes none"),
])
def test_bad_genotype_parameters(tmp_path, args, msg):
    r = sgn('run', 'dense_baseline', tmp_path/'run', *args)
    assert r.returncode == 2 and msg in r.stderr, r.stderr
    assert not (tmp_path/'run').exists()

def test_bad_genotype_files(tmp_path):
    bad = tmp_path/'bad.json'
    bad.write_text(json.dumps(PUBLISHED['alphaGAN_s'].to_dict() | dict(ops=PUBLISHED['alphaGAN_s'].ops | {'c1_up1': 'pixelshuffle'})))
    with pytest.raises(ValueError, match="unknown op 'pixelshuffle' on up edge 'c1_up1'"): DerivedGenerator(bad)
    bad.write_text('{"format": "sparse_gan_nb.genotype/1", "n_cells": 3, "ops": {')
    with pytest.raises(ValueError, match='is not JSON'): Genotype.load(bad)
    bad.write_text('{"format": "something/2"}')
    with pytest.raises(ValueError, match='not a genotype'): Genotype.load(bad)
