"Export, load and sparse inference of generators: round trips over families and densities, bad files, the per-layer choice."
import pytest, torch
from torch import nn
from torch.nn.utils import parametrize
from sparse_gan_nb.core import set_seed, save_state, CKPT_KIND
from sparse_gan_nb.models import get_models
from sparse_gan_nb.masks import SparseMasks, maskable_layers
from sparse_gan_nb.deploy import (export_state, export_generator, load_generator, sparsify, read_export, EXPORT_KIND,
                                  SparseConv2d, SparseConvTranspose2d, SparseLinear)

torch.set_num_threads(1)

FAMILIES = [('dcgan', dict(img_size=32, nc=3, width=.25)),
            ('sngan', dict(img_size=32, nc=3, width=.125)),
            ('biggan', dict(img_size=32, nc=3, width=.125, n_classes=10))]

def sparse_g(name, kw, density, seed=0):
    set_seed(seed)
    G, _ = get_models(name, **kw)
    masks = SparseMasks(G, density, 'erk', seed=seed)
    with torch.no_grad():  # BatchNorm statistics of the sparse G's own activations, as training leaves them (not the identity)
        for m in G.modules():
            if isinstance(m, nn.BatchNorm2d): m.reset_running_stats(); m.momentum = None
        G.train()
        for i in range(4): G(*inputs(G, 32, seed=10 + i))
    return G.eval(), masks

def inputs(G, n=6, seed=3):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.nz, generator=g)
    return (z, torch.randint(0, G.n_classes, (n,), generator=g)) if G.n_classes else (z,)

@pytest.mark.parametrize('density', [.05, .3])
@pytest.mark.parametrize('name,kw', FAMILIES, ids=[f[0] for f in FAMILIES])
def test_round_trip(tmp_path, name, kw, density):
    G, masks = sparse_g(name, kw, density)
    x = inputs(G)
    with torch.no_grad(): ref = G(*x)
    has_sn = any(parametrize.is_parametrized(m, 'weight') for m in G.modules())
    test_sn = name == 'biggan'
    assert has_sn == test_sn  # BigGAN's G carries spectral norm, the others do not
    if density == .3: assert 1. in masks.densities().values()  # ERK left a layer dense
    save_state(export_state(G), tmp_path/'g.safetensors', EXPORT_KIND)
    L = load_generator(tmp_path/'g.safetensors')
    assert not any(parametrize.is_parametrized(m, 'weight') for m in L.modules())
    with torch.no_grad():
        torch.testing.assert_close(L(*x), ref, atol=1e-6, rtol=0)
        S = sparsify(L, choose='sparse', inputs=x)
        kinds = {type(m) for m in S.modules()}
        assert kinds & {SparseConv2d, SparseConvTranspose2d, SparseLinear}
        assert not kinds & {nn.Conv2d, nn.ConvTranspose2d, nn.Linear}  # every layer went sparse
        assert (S(*x) - ref).abs().max().item() < 1e-5

def test_masks_are_folded_and_file_is_small(tmp_path):
    set_seed(0)
    G, _ = get_models('dcgan', img_size=32, nc=3, width=.5)  # dense weights: the masks given to the export zero them
    G.eval()
    layers = maskable_layers(G)
    masks = SparseMasks(get_models('dcgan', img_size=32, nc=3, width=.5)[0], .1, 'erk').state_dict()['masks']
    st = export_state(G, masks)
    save_state(st, tmp_path/'g.safetensors', EXPORT_KIND)
    L = load_generator(tmp_path/'g.safetensors')
    for k, w in maskable_layers(L).items(): assert torch.equal(w != 0, masks[k].bool() & (layers[k] != 0))
    dense = tmp_path/'dense.safetensors'
    save_state(dict(w=L.state_dict()), dense, 'x')
    assert (tmp_path/'g.safetensors').stat().st_size <= .25 * dense.stat().st_size
    with pytest.raises(ValueError, match="masks name layer 'nope'"): export_state(G, {'nope': torch.ones(1)})

def test_bad_files(tmp_path):
    G, _ = sparse_g('dcgan', FAMILIES[0][1], .1)
    p = tmp_path/'g.safetensors'
    save_state(export_state(G), p, EXPORT_KIND)
    data = p.read_bytes()
    (tmp_path/'cut.safetensors').write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match='corrupt|truncated'): load_generator(tmp_path/'cut.safetensors')
    (tmp_path/'junk.safetensors').write_bytes(b'\x00' * 64)
    with pytest.raises(ValueError, match='generator export'): load_generator(tmp_path/'junk.safetensors')
    save_state(dict(config={}), tmp_path/'ck.safetensors', CKPT_KIND)
    with pytest.raises(ValueError, match=f"not a '{EXPORT_KIND}'"): load_generator(tmp_path/'ck.safetensors')
    with pytest.raises(FileNotFoundError, match='does not exist'): load_generator(tmp_path/'none.safetensors')
    other, _ = get_models('sngan', img_size=32, nc=3, width=.125)
    with pytest.raises(ValueError, match="a 'dcgan' generator.*does not fit"): load_generator(p, model=other)
    with pytest.raises(FileNotFoundError, match='has no checkpoint.safetensors'): export_generator(tmp_path, tmp_path/'x.safetensors')

def test_choice_falls_back_to_dense(tmp_path):
    G, _ = sparse_g('dcgan', FAMILIES[0][1], .1)
    x = inputs(G, 16)
    # a timer that finds every sparse layer slower keeps every layer dense
    slow = lambda fns: {k: 1. if k == '(layer)' else 2. for k in fns}
    S = sparsify(G, inputs=x, timer=slow)
    assert {r['choice'] for r in S.sparse_report.values()} == {'dense'}
    assert not any(isinstance(m, (SparseConv2d, SparseConvTranspose2d, SparseLinear)) for m in S.modules())
    # measured for real: a fully dense 3x3 convolution is slower as a sparse product, so it stays dense
    conv = nn.Sequential(nn.Conv2d(64, 64, 3, 1, 1)).eval()
    S = sparsify(conv, inputs=(torch.randn(16, 64, 16, 16),))
    assert S.sparse_report['0']['density'] == 1. and S.sparse_report['0']['choice'] == 'dense', S.sparse_report
    with pytest.raises(ValueError, match='choose'): sparsify(G, choose='fast')
    with pytest.raises(ValueError, match='choose'): sparsify(G, choose=1.5)
