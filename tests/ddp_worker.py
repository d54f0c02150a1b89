"""One small training run for tests/test_distributed.py, started by torchrun with 1 or 2 CPU processes (gloo).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py CONFIG.json

Each process writes OUT/rank{r}.pt (plain tensors and lists, read back with weights_only=True): the history's losses,
the final weights of G, D and the EMA generator, the masks, whether every process held the same weights and masks
after every batch, the mask versions, and the error a process stopped with, if any.
"""
import json, os, sys, time, traceback
from pathlib import Path
os.environ.setdefault('OMP_NUM_THREADS', '1')
import torch
from torch import nn
from fastai.callback.core import Callback
from sparse_gan_nb.data import gan_dls
from sparse_gan_nb.models import get_models
from sparse_gan_nb.learner import GANLearner, CheckpointCallback
from sparse_gan_nb.losses import g_loss
from sparse_gan_nb.sparse import SparseMaskCallback, Explore, SparseStatsCallback
from sparse_gan_nb.distill import load_teacher, TeacherDiscriminatorLoss
from sparse_gan_nb.evaluate import Evaluator, EvalCallback
from sparse_gan_nb.distributed import init_distributed, distribute, shutdown_distributed

class ArchG(nn.Module):
    "A generator with two architecture weights (as a searched generator has): its output is scaled by 1 + tanh(α).sum()."
    def __init__(self, G):
        super().__init__(); self.G, self.alpha = G, nn.Parameter(torch.zeros(2))
        self.nz, self.n_classes, self.model_config = G.nz, G.n_classes, G.model_config
    def arch_parameters(self): return [self.alpha]
    def forward(self, z, y=None): return self.G(z, y) * (1 + torch.tanh(self.alpha).sum())

def arch_loss(learn):
    z, y = learn.draw_noise()
    return g_loss(learn.G, learn.D, len(z), learn.loss_func, z.device, z, y)

class ArchStep(Callback):
    "Registers an added step over G's architecture weights, every G step."
    def before_fit(self): self.learn.add_step('arch', arch_parameters_of(self.learn.G), arch_loss, lr=1e-2, every=1, betas=(0.5, 0.999))

def arch_parameters_of(G): return list(G.arch_parameters())

class Agreement(Callback):
    "After every batch: do all processes hold the same G, D, EMA generator and masks?"
    order = 90
    def __init__(self): self.checks = []
    def after_batch(self):
        L = self.learn
        if L.comm is None: return
        ts = [p.detach() for net in (L.G, L.D) for p in net.parameters()] + ([p for p in L.G_ema.parameters()] if L.G_ema is not None else [])
        ts += [m for cb in L.cbs if isinstance(cb, SparseMaskCallback) for m in cb.sparse.masks.values()]
        self.checks.append(bool(L.comm.agree(ts)))

class NaNOn(Callback):
    "Makes the D loss nan on process `rank` at G step `step`."
    def __init__(self, rank, step): self.rank, self.step = rank, step
    def after_loss(self):
        L = self.learn
        if L.rank == self.rank and L.g_step == self.step and L.phase == 'D': L.loss_grad = L.loss_grad * float('nan')

def rank_dependent_growth():
    "Make gradient growth score weights with a process-dependent bias (what a local-gradient hook would do)."
    orig = Explore.update
    def update(self, cb, grads):
        if grads is None: return orig(self, cb, grads)
        r = cb.learn.rank
        return orig(self, cb, [g + (r + 1) * torch.rand(g.shape, generator=torch.Generator().manual_seed(cb.learn.g_step + 7 * r)) for g in grads])
    Explore.update = update

def main(cfg_path):
    cfg = json.loads(Path(cfg_path).read_text())
    out = Path(cfg['out']); out.mkdir(parents=True, exist_ok=True)
    rank, world, dev = init_distributed(cfg.get('device', 'cpu'))
    torch.manual_seed(cfg.get('seed', 0))
    dls = gan_dls(cfg.get('data', 'ring8'), bs=cfg.get('bs', 32), seed=0, n=cfg.get('n', 512), device=dev, **({'size': 16} if cfg.get('data') == 'digits' else {}))
    if cfg.get('model', 'mlp') == 'mlp': G, D = get_models('mlp', nz=4, width=0.25)
    else: G, D = get_models('dcgan', nz=16, img_size=16, nc=1, width=0.25)
    if cfg.get('arch'): G = ArchG(G)
    if cfg.get('search'):  # alphaGAN's search: a tiny supernet, α trained on its half of the training split
        from sparse_gan_nb.search import ArchitectureSearch, split_train
        G, D = get_models('alphagan_super', nz=16, img_size=16, nc=1, width=1/64, d_width=1/8)
        dls, arch = split_train(dls)
    cbs, masks = [], []
    for net, sp in (cfg.get('sparse') or {}).items():
        sched = Explore(sp['delta_t'], 0.3, t_max=cfg.get('t_max', 1.), growth=sp['growth']) if sp.get('growth') else None
        masks.append(SparseMaskCallback(net, sp['density'], schedule=sched, seed=3, check_sync=cfg.get('check_sync', False)))
    cbs += masks
    if masks: cbs.append(SparseStatsCallback(br_every=2))
    if cfg.get('teacher'): cbs.append(TeacherDiscriminatorLoss(load_teacher(cfg['teacher'], dls).D, lam=0.5, start=0.3))
    if cfg.get('arch'): cbs.append(ArchStep())
    if cfg.get('search'): cbs.append(search := ArchitectureSearch.from_preset(arch, 'smoke'))
    if cfg.get('nan_at'): cbs.append(NaNOn(*cfg['nan_at']))
    if cfg.get('run_dir'): cbs.append(CheckpointCallback(every=cfg.get('ckpt_every')))
    if cfg.get('eval'): cbs.append(EvalCallback(every=10**6, n_samples=cfg['eval'], evaluator=Evaluator('ring8', n_samples=cfg['eval'], metrics=('fid', 'pr', 'modes'))))
    if cfg.get('rank_dependent_growth'): rank_dependent_growth()
    agree = Agreement(); cbs.append(agree)
    learn = distribute(GANLearner(dls, G, D, n_critic=cfg.get('n_critic', 1), ema=None if cfg.get('search') else 0.9, run_dir=cfg.get('run_dir'), log_every=1,
                                  lr_g=1e-3, lr_d=1e-3, betas=(0.5, 0.999), cbs=cbs, config=dict(model=G.model_config, data=dict(name='ring8'))))
    res, t0 = dict(rank=rank, world=world), time.time()
    try:
        for n in cfg['n_iter'] if isinstance(cfg['n_iter'], list) else [cfg['n_iter']]:
            learn.fit_iters(n, resume=cfg.get('resume'))
            cfg['resume'] = None
    except Exception as e:
        res['error'] = f'{type(e).__name__}: {e}'
        if not isinstance(e, (FloatingPointError, RuntimeError)): traceback.print_exc()
    res['seconds'] = time.time() - t0
    rows = learn.history.rows
    res['loss_d'] = [r['loss_d'] for r in rows]; res['loss_g'] = [r['loss_g'] for r in rows]
    res['iters'] = [r['iter'] for r in rows]
    params = lambda m: {} if m is None else {k: v.detach().clone() for k, v in m.named_parameters()}  # BatchNorm's running statistics are per process
    res['G'], res['D'], res['G_ema'] = params(learn.G), params(learn.D), params(learn.G_ema)
    res['masks'] = {cb.net: [m.clone() for m in cb.sparse.masks.values()] for cb in masks if cb.sparse is not None}
    res['versions'] = {cb.net: len(cb.updates) for cb in masks}
    res['update_iters'] = {cb.net: [u['iter'] for u in cb.updates] for cb in masks}
    res['checks'] = agree.checks
    if cfg.get('search'): res['rounds'] = [r['dg'] for r in search.rounds]
    res['metrics'] = {k: v for k, v in getattr(learn, 'final_metrics', {}).items() if isinstance(v, (int, float))}
    if cfg.get('eval_fixed'):  # the evaluation of one fixed generator, shared over the processes
        torch.manual_seed(123); Gf, _ = get_models('mlp', nz=4, width=0.25)
        ev = Evaluator('ring8', n_samples=cfg['eval_fixed'], metrics=('fid', 'pr', 'dc', 'modes'))
        res['fixed_metrics'] = {k: v for k, v in ev.evaluate_generator(Gf, comm=learn.comm).items() if isinstance(v, (int, float)) and k != 'seconds'}
    torch.save(res, out/f'rank{rank}.pt')
    shutdown_distributed()  # leave the process group together, also after an error (an exit with gloo's threads still up can abort)

if __name__ == '__main__': main(sys.argv[1])
