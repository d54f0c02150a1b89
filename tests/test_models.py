"Shapes, conditioning, spectral norm, gradients, MAC counts and errors of every model family in `sparse_gan_nb.models`."
import math
import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from sparse_gan_nb.models import *

FAMILIES = [('dcgan', 16), ('dcgan', 32), ('dcgan', 64), ('sngan', 16), ('sngan', 32), ('sngan', 48),
            ('biggan', 16), ('biggan', 32), ('mlp', None)]
WIDTHS = (1., .5, .25)

def _pair(name, size, width, n_classes=0, nc=3):
    if name == 'biggan': n_classes = n_classes or 10
    kw = {} if size is None else dict(img_size=size, nc=nc)
    return get_models(name, width=width, n_classes=n_classes, **kw)

@pytest.fixture(autouse=True)
def _seed(): torch.manual_seed(0)

@pytest.mark.parametrize('width', WIDTHS)
@pytest.mark.parametrize('name,size', FAMILIES)
def test_shapes_and_range(name, size, width):
    G, D = _pair(name, size, width)
    bs = 2
    z = torch.randn(bs, G.nz)
    y = torch.randint(0, G.n_classes, (bs,)) if G.n_classes else None
    x = G(z, y)
    if name == 'mlp': assert x.shape == (bs, 2)
    else:
        assert x.shape == (bs, 3, size, size) and (G.img_size, G.nc) == (size, 3)
        assert x.min() >= -1 and x.max() <= 1
    out = D(x, y)
    assert out.shape == (bs,) and torch.isfinite(out).all()
    assert G.n_classes == D.n_classes == (10 if name == 'biggan' else 0)

@pytest.mark.parametrize('name,size', [f for f in FAMILIES if f[0] != 'mlp'])
def test_one_channel(name, size):
    G, D = _pair(name, size, .25, nc=1)
    y = torch.arange(2) if G.n_classes else None
    x = G(torch.randn(2, G.nz), y)
    assert x.shape == (2, 1, size, size) and D(x, y).shape == (2,)

@pytest.mark.parametrize('name,size', [f for f in FAMILIES if f[0] != 'mlp'])
def test_params_scale_between_width_and_width_squared(name, size):
    p = {w: [count_params(m) for m in _pair(name, size, w)] for w in WIDTHS}
    for w in WIDTHS[1:]:
        for i in (0, 1):
            r = p[w][i] / p[1.][i]
            assert w**2 <= r <= w, (name, size, w, i, r)  # hidden-to-hidden layers scale as w^2, the ends as w

def test_unconditional_models_ignore_y():
    for name in ('dcgan', 'sngan', 'mlp'):
        G, D = _pair(name, 16, .25)
        G.eval(); D.eval()
        z = torch.randn(2, G.nz)
        with torch.no_grad():
            x = G(z)
            assert torch.equal(x, G(z, torch.tensor([3, 4])))
            assert torch.equal(D(x), D(x, torch.tensor([3, 4])))

@pytest.mark.parametrize('name', ['sngan', 'biggan'])
def test_conditional_models_use_y(name):
    G, D = get_models(name, img_size=16, width=.25, n_classes=5)
    G.eval(); D.eval()
    for b in G.blocks:  # make the per-class gains differ (they start equal, at 1)
        nn.init.normal_(b.b1.gain.weight, 1., .5)
    z = torch.randn(1, G.nz).expand(5, -1)
    y = torch.arange(5)
    with torch.no_grad():
        x = G(z, y)
        assert not torch.allclose(x[0], x[1])
        assert not torch.allclose(D(x, y), D(x, y.roll(1)))
    with pytest.raises(ValueError, match='is class-conditional'): G(z)
    with pytest.raises(ValueError, match='is class-conditional'): D(x)

def _sn(m): return parametrize.is_parametrized(m, 'weight') and type(m.parametrizations.weight[0]).__name__ == '_SpectralNorm'

@pytest.mark.parametrize('size', [16, 32, 48])
def test_sngan_spectral_norm(size):
    G, D = get_models('sngan', img_size=size, width=.25, n_classes=3)
    layers = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert len(layers) >= 10 and all(_sn(m) for m in layers)
    assert not any(parametrize.is_parametrized(m) for m in G.modules())
    names = [n for n, _ in D.named_parameters() if n.endswith('weight.original')]
    assert len(names) == len(layers)  # the trainable tensor of each SN layer

def test_biggan_spectral_norm_in_g_and_d():
    G, D = get_models('biggan', width=.25, n_classes=10)
    assert all(_sn(m) for m in G.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert not any(_sn(m) for m in G.modules() if isinstance(m, nn.Embedding))  # class gains/biases
    assert all(_sn(m) for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)))

def test_dcgan_sn_option():
    D = DCGANDiscriminator(img_size=16, width=.25, sn=True)
    assert all(_sn(m) for m in D.modules() if isinstance(m, nn.Conv2d))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    assert not any(parametrize.is_parametrized(m) for m in DCGANDiscriminator(img_size=16).modules())

@pytest.mark.parametrize('name,size', [('dcgan', 16), ('sngan', 16), ('biggan', 16), ('mlp', None)])
def test_gradient_flows_g_to_d(name, size):
    G, D = _pair(name, size, .25)
    y = torch.arange(4) % 10 if G.n_classes else None
    loss = -D(G(torch.randn(4, G.nz), y), y).mean()
    loss.backward()
    for net in (G, D):
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.grad.abs().sum() > 0 for n, p in G.named_parameters() if 'weight' in n)

def test_count_macs_hand_checked():
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), nn.Flatten(), nn.Linear(8*4*4, 10))
    x = torch.randn(5, 3, 8, 8)
    want = (4*8*8)*3*9 + (8*4*4)*(4//2)*9 + 128*10
    assert count_macs(m, x) == want
    assert count_macs(m, x[:1]) == want  # per sample, whatever the batch size
    ct = nn.ConvTranspose2d(6, 3, 4, stride=2, padding=1)
    assert count_macs(ct, torch.randn(2, 6, 5, 5)) == (6*5*5)*3*16
    assert count_macs(nn.Conv1d(2, 3, 3), torch.randn(2, 2, 10)) == (3*8)*2*3
    assert count_macs(nn.Embedding(4, 3), torch.tensor([0, 1])) == 0
    assert count_params(m) == (3*4*9+4) + 2*4 + (4//2*8*9+8) + (128*10+10)

def test_count_macs_leaves_state_alone():
    G, D = get_models('sngan', img_size=16, width=.25)
    G.train(); D.train(); D.blocks[0].eval()
    bn, sn = G.blocks[0].b1.bn, D.blocks[1].c1.parametrizations.weight[0]
    rm, u = bn.running_mean.clone(), sn._u.clone()
    count_macs(G, torch.randn(4, 128)); count_macs(D, torch.randn(4, 3, 16, 16))
    assert torch.equal(bn.running_mean, rm) and torch.equal(sn._u, u)
    assert G.training and D.training and not D.blocks[0].training

def test_sngan_cifar_sizes():
    G, D = get_models('sngan')
    assert count_params(G) == 4_276_739 and count_params(D) == 1_053_825
    assert count_macs(G, torch.randn(1, 128)) == 128*16*256 + (64 + 256 + 1024)*256*256*19 + 1024*256*3*9
    df = model_summary('sngan', widths=(1., .5))
    assert list(df.index) == [1., .5] and df.loc[1., 'G_params'] == 4_276_739 and df.loc[1., 'G_params_ratio'] == 1

def test_stl_layout():
    G, D = get_models('sngan', img_size=48)
    assert G.bottom == 6 and [b.c2.out_channels for b in G.blocks] == [256, 128, 64]
    assert [b.c2.out_channels for b in D.blocks] == [64, 128, 256, 512, 1024]

@pytest.mark.parametrize('bad', [0, -.5, float('nan'), float('inf')])
def test_bad_width(bad):
    with pytest.raises(ValueError, match='width must be'): get_models('sngan', width=bad)
    with pytest.raises(ValueError, match='d_width must be'): get_models('dcgan', d_width=bad)
    with pytest.raises(ValueError, match='width must be'): MLPGenerator(width=bad)

@pytest.mark.parametrize('make,what', [
    (lambda: ResNetGenerator(width=1e-3), 'ResNetGenerator block with 256 channels'),
    (lambda: ResNetDiscriminator(width=1e-3), 'ResNetDiscriminator block with 128 channels'),
    (lambda: DCGANGenerator(width=1e-3), 'DCGANGenerator layer with 256 channels'),
    (lambda: BigGANDiscriminator(width=1e-3), 'BigGANDiscriminator block with 256 channels'),
    (lambda: MLPDiscriminator(width=1e-3), 'MLPDiscriminator hidden layer with 128 units'),
])
def test_width_giving_zero_channels(make, what):
    with pytest.raises(ValueError, match=r'width=0\.001 gives ' + what + r'.* = 0 channels'): make()

@pytest.mark.parametrize('make,allowed', [
    (lambda: get_models('dcgan', img_size=48), '16, 32, 64'),
    (lambda: get_models('sngan', img_size=64), '16, 32, 48'),
    (lambda: get_models('biggan', img_size=48, n_classes=10), '16, 32'),
    (lambda: ResNetDiscriminator(img_size=28), '16, 32, 48'),
])
def test_unsupported_img_size(make, allowed):
    with pytest.raises(ValueError, match=f'unknown img_size=.*; choose one of {allowed}'): make()

def test_name_and_classes_errors():
    with pytest.raises(ValueError, match="unknown name='wgan'; choose one of 'dcgan', 'dcgan_sn', 'sngan', 'biggan', 'mlp'"): get_models('wgan')
    with pytest.raises(ValueError, match="name='biggan' is class-conditional"): get_models('biggan')
    with pytest.raises(ValueError, match='n_classes must be a whole number > 0'): BigGANGenerator(n_classes=0)
    with pytest.raises(ValueError, match="name='mlp' is unconditional"): get_models('mlp', n_classes=3)
    with pytest.raises(ValueError, match='n_classes must be a whole number >= 0'): get_models('sngan', n_classes=-1)
