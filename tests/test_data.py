"""Integration tests for sparse_gan_nb.data: tiny fixtures written in each real on-disk format, loaded the way a user
loads them (get_data / gan_dls), plus every bad-input case. The fixture writers here are independent of the library."""
import pickle, re
import numpy as np
import pytest
import torch
from PIL import Image
from sparse_gan_nb.data import (get_data, gan_dls, load_cifar10, load_stl10, load_image_folder, load_digits_images,
                                load_stacked_digits, gaussian_mixture, mixture_centers, SeededDL, GANDataLoaders,
                                DATA_NAMES)

# ---------------------------------------------------------------- fixture writers (the official formats)

def write_cifar(root, n=10, seed=0):
    "cifar-10-batches-py/{data_batch_1..5, test_batch}: pickled dicts with b'data' uint8 (n, 3072) and b'labels'."
    d = root/'cifar-10-batches-py'; d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        b = {b'batch_label': name.encode(), b'data': rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b'labels': [int(v) for v in rng.integers(0, 10, n)], b'filenames': [b'x.png'] * n}
        with open(d/name, 'wb') as f: pickle.dump(b, f)
        batches[name] = b
    return d, batches

STL_N = dict(train=4, test=3, unlabeled=5)

def write_stl(root, seed=0):
    "stl10_binary/{train,test}_{X,y}.bin, unlabeled_X.bin; each image 3 planes of 96x96 stored column-major."
    d = root/'stl10_binary'; d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for part, k in STL_N.items():
        flat = rng.integers(0, 200, (k, 3 * 96 * 96), dtype=np.uint8)
        # channel 1 (green), row 7, column 81 of image 0 is 255: byte offset c*9216 + col*96 + row in column-major
        flat[0, 1 * 9216 + 81 * 96 + 7] = 255
        flat.tofile(d/f'{part}_X.bin')
        if part != 'unlabeled': np.array([(i % 10) + 1 for i in range(k)], dtype=np.uint8).tofile(d/f'{part}_y.bin')
    return d

def write_folder(root, size=(20, 12)):
    "ImageFolder layout: root/<class>/*.png|jpg; class 'a' red, class 'b' blue, plus a hidden checkpoint folder."
    for cls, col, k in (('a', (255, 0, 0), 5), ('b', (0, 0, 255), 5)):
        (root/cls).mkdir(parents=True)
        for i in range(k): Image.new('RGB', size, col).save(root/cls/f'{i}.png')
    Image.new('RGB', size, (0, 0, 255)).save(root/'b'/'extra.jpg', quality=100)
    (root/'.ipynb_checkpoints').mkdir(); Image.new('RGB', size).save(root/'.ipynb_checkpoints'/'x.png')
    return root

@pytest.fixture
def cifar(tmp_path): return write_cifar(tmp_path/'c10')

@pytest.fixture
def stl(tmp_path): return write_stl(tmp_path/'stl')

@pytest.fixture
def folder(tmp_path): return write_folder(tmp_path/'pets')

def u8(x): return ((x + 1) * 127.5).round().to(torch.uint8)

def check_images(x, n, c, s):
    assert x.shape == (n, c, s, s) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1

# ---------------------------------------------------------------- CIFAR-10

def test_cifar_splits_and_pixels(cifar):
    d, batches = cifar
    root = d.parent
    x, y = get_data('cifar10', root)
    check_images(x, 50, 3, 32)
    assert y.dtype == torch.int64 and y.tolist() == sum((batches[f'data_batch_{i}'][b'labels'] for i in range(1, 6)), [])
    # pixel-exact: the 3072 bytes are R plane, G plane, B plane, each row-major
    raw = batches['data_batch_2'][b'data'][3]
    assert np.array_equal(u8(x[13]).flatten().numpy(), raw)
    assert u8(x[13])[2, 31, 0].item() == raw[2 * 1024 + 31 * 32 + 0]
    xv, yv = get_data('cifar10', root, split='valid')
    check_images(xv, 10, 3, 32); assert yv.tolist() == batches['test_batch'][b'labels']
    assert get_data('cifar10', root, split='all')[0].shape[0] == 60
    assert torch.equal(get_data('cifar10', d)[0], x)  # the cifar-10-batches-py folder itself also works
    check_images(get_data('cifar10', root, size=16)[0], 50, 3, 16)
    assert torch.equal(load_cifar10(root, train=False)[0], xv)

def test_cifar_subsample(cifar):
    root = cifar[0].parent
    x, y = get_data('cifar10', root, n=7, seed=3)
    assert x.shape[0] == 7
    xa, ya = get_data('cifar10', root)
    idx = [int((xa == xi).all(3).all(2).all(1).nonzero()) for xi in x]
    assert idx == sorted(idx) and torch.equal(ya[idx], y)  # a subset, in the original order
    assert torch.equal(get_data('cifar10', root, n=7, seed=3)[0], x)
    assert not torch.equal(get_data('cifar10', root, n=7, seed=4)[0], x)
    assert torch.equal(get_data('cifar10', root, split='valid', n=4, seed=1)[0], get_data('cifar10', root, split='valid', n=4, seed=2)[0])
    assert get_data('cifar10', root, n=1000)[0].shape[0] == 50  # at most n

def test_cifar_dls(cifar):
    dls = gan_dls('cifar10', bs=8, path=cifar[0].parent)
    assert isinstance(dls, GANDataLoaders)
    assert (dls.data_name, dls.nc, dls.img_size, dls.n_classes) == ('cifar10', 3, 32, 10)
    bs = list(dls.train)
    assert len(bs) == 50 // 8 and all(xb.shape == (8, 3, 32, 32) and yb.shape == (8,) for xb, yb in bs)
    assert sum(len(yb) for _, yb in dls.valid) == 10

# ---------------------------------------------------------------- STL-10

def test_stl_column_major_and_labels(stl):
    root = stl.parent
    x, y = load_stl10(root, 'train', size=96)
    check_images(x, 4, 3, 96)
    assert y.tolist() == [0, 1, 2, 3]
    assert u8(x)[0, 1, 7, 81].item() == 255       # row 7, column 81 after the transposition
    assert u8(x)[0, 1, 81, 7].item() != 255
    raw = np.fromfile(stl/'train_X.bin', dtype=np.uint8).reshape(4, 3, 96, 96)
    assert np.array_equal(u8(x).numpy(), raw.transpose(0, 1, 3, 2))  # every pixel
    xu, yu = load_stl10(root)                    # default: unlabeled, 48 px
    check_images(xu, 5, 3, 48); assert yu.tolist() == [-1] * 5
    assert load_stl10(stl, 'test', size=96)[1].tolist() == [0, 1, 2]  # the stl10_binary folder itself also works

def test_stl_get_data(stl):
    root = stl.parent
    x, y = get_data('stl10', root)               # train = train+unlabeled, 48 px
    check_images(x, 9, 3, 48); assert y.tolist() == [0, 1, 2, 3] + [-1] * 5
    xv, yv = get_data('stl10', root, split='valid', size=96)
    check_images(xv, 3, 3, 96); assert yv.tolist() == [0, 1, 2]
    xa, ya = get_data('stl10', root, split='all')
    assert xa.shape[0] == 12 and ya.tolist() == y.tolist() + [0, 1, 2]
    xs, ys = get_data('stl10', root, n=3, seed=1)
    full = load_stl10(root, 'train+unlabeled', size=48)[0]
    assert all((full == xi).all(3).all(2).all(1).any() for xi in xs)
    xi, _ = load_stl10(root, 'train+unlabeled', size=48, idxs=[6, 1])
    assert torch.equal(xi, full[[6, 1]])
    xsa, _ = get_data('stl10', root, split='all', n=5, seed=2)  # subset across both parts
    assert xsa.shape == (5, 3, 48, 48)

def test_stl_dls(stl):
    dls = gan_dls('stl10', bs=4, path=stl.parent)
    assert (dls.nc, dls.img_size, dls.n_classes) == (3, 48, 10)
    assert len(dls.train) == 2 and dls.one_batch()[0].shape == (4, 3, 48, 48)

# ---------------------------------------------------------------- image folders

def test_image_folder(folder):
    x, y = get_data('folder', folder, split='all', size=8)
    check_images(x, 11, 3, 8)
    assert y.tolist() == [0] * 5 + [1] * 6
    assert (u8(x[:5])[:, 0] == 255).all() and (u8(x[:5])[:, 2] == 0).all()
    xt, yt = get_data('folder', folder)
    xv, yv = get_data('folder', folder, split='valid')
    assert yv.tolist() == [0, 1] and len(yt) == 9  # stratified: 20% of each class
    assert torch.equal(get_data('folder', folder, split='valid', seed=9)[1], yv)
    dls = gan_dls('folder', bs=4, path=folder, size=16)
    assert (dls.data_name, dls.nc, dls.img_size, dls.n_classes) == ('folder', 3, 16, 2)
    assert dls.one_batch()[0].shape == (4, 3, 16, 16)

def test_image_folder_pixels_and_crop(tmp_path):
    d = tmp_path/'flat'; d.mkdir()
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(img).save(d/'a.png')
    wide = np.zeros((10, 30, 3), np.uint8); wide[:, 10:20] = (0, 255, 0); wide[:, :10] = wide[:, 20:] = (255, 0, 0)
    Image.fromarray(wide).save(d/'b.png')
    x, y = load_image_folder(d, size=16)
    check_images(x, 2, 3, 16); assert y.tolist() == [0, 0]
    assert np.array_equal(u8(x[0]).permute(1, 2, 0).numpy(), img)  # native size: pixel-exact
    assert (u8(x[1])[1] == 255).all() and (u8(x[1])[0] == 0).all()  # the centre crop keeps only the green middle
    dls = gan_dls('folder', bs=1, path=d, size=16, valid_pct=0.5)
    assert dls.n_classes == 1

# ---------------------------------------------------------------- built-in data

def test_image_folder_16_bit_exif_and_float(tmp_path):
    "16-bit greyscale keeps its levels (PIL's own conversion clips it to white), EXIF rotation is applied, float images are refused."
    (tmp_path/'f').mkdir()
    for name, v in (('a.png', 1000), ('b.png', 30000), ('c.tif', 65535)): Image.fromarray(np.full((8, 8), v, np.uint16)).save(tmp_path/'f'/name)
    x, _ = load_image_folder(tmp_path/'f', size=8)
    assert torch.allclose(x.mean((1, 2, 3)), torch.tensor([1000, 30000, 65535]) / 65535 * 2 - 1, atol=1e-2)
    im = Image.new('RGB', (8, 4)); im.paste((0, 255, 0), (0, 0, 4, 4))  # green on the left
    ex = im.getexif(); ex[0x0112] = 6; im.save(tmp_path/'f'/'d.jpg', exif=ex, quality=100)  # 6: turn 90° clockwise to view
    x, _ = load_image_folder(tmp_path/'f', size=4)
    assert x[3, 1, :2].mean() > .5 and x[3, 1, 2:].mean() < -.5  # upright, the green half is on top
    Image.fromarray(np.full((4, 4), .5, np.float32)).save(tmp_path/'f'/'e.tif')
    with pytest.raises(ValueError, match=r"e.tif' \(ValueError: its pixels are floats of unknown range"): load_image_folder(tmp_path/'f')

def test_digits_and_stacked():
    x, y = load_digits_images(32)
    check_images(x, 1797, 1, 32); assert x.min() == -1 and x.max() == 1
    x[:] = 5; assert load_digits_images(32)[0].max() == 1  # cached, but handed out as copies
    xt, yt = get_data('digits'); xv, yv = get_data('digits', split='valid')
    assert len(xt) + len(xv) == 1797 and len(yv) == 359
    xs, ys = load_stacked_digits(300, size=8, seed=2, split='train')
    assert xs.shape == (300, 3, 8, 8) and ys.min() >= 0 and ys.max() <= 999
    d8, l8 = load_digits_images(8)
    for i in range(10):  # labels are 100*d0 + 10*d1 + d2 of the channel digits
        ds = [int(l8[(d8[:, 0] == xs[i, c]).all(2).all(1)][0]) for c in range(3)]
        assert ys[i].item() == 100 * ds[0] + 10 * ds[1] + ds[2]
    assert gan_dls('stacked_digits', bs=32, n=200).n_classes == 1000

def test_mixtures():
    for kind, k, std in (('ring8', 8, 0.02), ('grid25', 25, 0.05)):
        x, y = get_data(kind, n=5000)
        assert x.shape == (5000, 2) and set(y.tolist()) == set(range(k))
        assert torch.equal(torch.cdist(x, mixture_centers(kind)).argmin(1), y)
        assert abs((x - mixture_centers(kind)[y]).std().item() - std) < 0.1 * std
        dls = gan_dls(kind, bs=100)
        assert (dls.nc, dls.img_size, dls.n_classes) == (2, None, k)
        assert dls.one_batch()[0].shape == (100, 2)
    assert get_data('ring8')[0].shape == (8000, 2) and get_data('ring8', split='valid')[0].shape == (2000, 2)
    assert torch.equal(get_data('ring8', split='valid', seed=1)[0], get_data('ring8', split='valid', seed=2)[0])
    assert not torch.equal(get_data('ring8', seed=1)[0], get_data('ring8', seed=2)[0])
    assert gaussian_mixture('grid25', 10, std=1.)[0].shape == (10, 2)

# ---------------------------------------------------------------- loader order

def batches(dl): return [yb.tolist() for _, yb in dl]

def test_seeded_order_and_resume():
    dls = gan_dls('digits', bs=100, seed=3)
    e0, e1, e2 = batches(dls.train), batches(dls.train), batches(dls.train)
    assert e0 != e1 != e2 and dls.train.epoch == 2
    assert all(len(b) == 100 for b in e0) and len(e0) == 1438 // 100
    again = gan_dls('digits', bs=100, seed=3)
    again.set_epoch(1); assert batches(again.train) == e1   # a resumed run rebuilds epoch 1
    assert batches(again.train) == e2                       # and carries on with epoch 2
    assert batches(gan_dls('digits', bs=100, seed=3).train) == e0
    assert batches(gan_dls('digits', bs=100, seed=4).train) != e0
    assert sorted(sum(e0, [])) != sum(e0, [])               # shuffled
    v = gan_dls('digits', bs=100, seed=3).valid
    assert torch.equal(torch.cat([yb for _, yb in v]), get_data('digits', split='valid')[1])  # in order, last kept

def test_iteration_leaves_global_rng_alone():
    dls = gan_dls('digits', bs=64)
    torch.manual_seed(0); a = torch.rand(3)
    torch.manual_seed(0); list(dls.train); dls.one_batch(); list(dls.valid)
    assert torch.equal(torch.rand(3), a)

def test_one_batch_does_not_use_an_epoch():
    dls = gan_dls('digits', bs=64)
    first = dls.one_batch()[1]
    assert dls.train.epoch == 0 and torch.equal(next(iter(dls.train))[1], first)

def test_metadata_attributes_and_device():
    dls = gan_dls('digits', bs=16, device='cpu')
    assert dls.train.one_batch()[0].device.type == 'cpu'
    dls.extra = 'ok'; assert dls.extra == 'ok'              # attributes can be added to fastai DataLoaders
    assert dls.set_epoch == dls.train.set_epoch             # GetAttr delegates to the train loader
    dl2 = dls.train.new(); assert isinstance(dl2, SeededDL) and dl2.seed == dls.train.seed
    assert 'digits' in repr(dls) and 'n_classes=10' in repr(dls)

# ---------------------------------------------------------------- bad input

def raises(exc, text, f, *a, **kw):
    with pytest.raises(exc, match=re.escape(text)): f(*a, **kw)

def test_bad_names_and_arguments(tmp_path):
    raises(ValueError, "unknown name='mnist'; choose one of " + ', '.join(map(repr, DATA_NAMES)), get_data, 'mnist')
    raises(ValueError, "unknown name='mnist'", gan_dls, 'mnist')
    for name in ('cifar10', 'stl10', 'folder'):
        raises(ValueError, f"name={name!r} is read from a local folder, so it needs path=", get_data, name)
    raises(ValueError, "'digits' is built in and takes no path", get_data, 'digits', path=tmp_path)
    raises(ValueError, "unknown split='test'; choose one of 'train', 'valid', 'all'", get_data, 'digits', split='test')
    raises(ValueError, "unknown split='val'", load_stl10, tmp_path, 'val')
    raises(ValueError, "unknown split='x'", load_stacked_digits, 10, split='x')
    for bad in (0, -3, 2.5):
        raises(ValueError, f"size must be a whole number > 0, got {bad!r}", get_data, 'digits', size=bad)
        raises(ValueError, f"bs must be a whole number > 0, got {bad!r}", gan_dls, 'digits', bs=bad)
    raises(ValueError, "size must be >= 8 for digits", get_data, 'digits', size=4)
    raises(ValueError, "size must be >= 8 for digits", load_digits_images, 7)
    raises(ValueError, "leave size=None", get_data, 'grid25', size=32)
    raises(ValueError, "n must be a whole number > 0, got 0", get_data, 'digits', n=0)
    raises(ValueError, "seed must be a whole number >= 0, got -1", get_data, 'ring8', seed=-1)
    for bad in (0, 1, 1.5, -0.1):
        raises(ValueError, f"valid_pct must be a number in (0, 1), got {bad!r}", get_data, 'digits', valid_pct=bad)
    raises(ValueError, "bs=1439 is larger than the 1438 training items of 'digits'; use bs <= 1438", gan_dls, 'digits', bs=1439)
    raises(ValueError, "bs=20 is larger than the 8 training items", gan_dls, 'ring8', bs=20, n=8)
    raises(ValueError, "do not pass split=", gan_dls, 'digits', split='valid')
    raises(ValueError, "unknown kind='ring9'", mixture_centers, 'ring9')
    raises(ValueError, "std must be a number > 0", gaussian_mixture, 'ring8', std=-1.)
    raises(ValueError, "epoch must be a whole number >= 0, got -1", gan_dls('digits').set_epoch, -1)

@pytest.mark.parametrize('name,files', [('cifar10', 'cifar-10-batches-py/{data_batch_1'),
                                        ('stl10', 'stl10_binary/{train_X.bin, train_y.bin, test_X.bin'),
                                        ('folder', 'path/<class>/<image>')])
def test_missing_path(tmp_path, name, files):
    p = tmp_path/'nope'
    with pytest.raises(FileNotFoundError) as e: get_data(name, p)
    msg = str(e.value)
    assert f"{name}: the path does not exist (path={str(p)!r})" in msg and files in msg and 'never downloads' in msg

def test_wrong_layout(tmp_path, cifar, stl):
    empty = tmp_path/'empty'; empty.mkdir(); (empty/'readme.txt').write_text('hi')
    raises(FileNotFoundError, f"cifar10: missing data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5 in {str(empty)!r}",
           get_data, 'cifar10', empty)
    raises(FileNotFoundError, "missing test_batch", get_data, 'cifar10', empty, split='valid')
    raises(FileNotFoundError, "stl10: missing train_X.bin, train_y.bin, unlabeled_X.bin", get_data, 'stl10', empty)
    raises(FileNotFoundError, "folder: no images found", get_data, 'folder', empty)
    raises(FileNotFoundError, "the path is a file, not a folder", get_data, 'cifar10', empty/'readme.txt')
    raises(FileNotFoundError, "the path is a file, not a folder", get_data, 'folder', empty/'readme.txt')
    (cifar[0]/'data_batch_3').unlink()
    raises(FileNotFoundError, "cifar10: missing data_batch_3", get_data, 'cifar10', cifar[0].parent)
    (stl/'test_y.bin').unlink()
    raises(FileNotFoundError, "stl10: missing test_y.bin", get_data, 'stl10', stl.parent, split='valid')
    assert get_data('stl10', stl.parent)[0].shape[0] == 9  # the training split does not need the test files

def test_corrupt_files(tmp_path, cifar, stl, folder):
    d = cifar[0]
    (d/'test_batch').write_bytes(b'\x00garbage')
    raises(ValueError, f"cifar10: {str(d/'test_batch')!r} is not a CIFAR-10 batch", get_data, 'cifar10', d.parent, split='valid')
    with open(d/'data_batch_1', 'wb') as f: pickle.dump({b'data': np.zeros((3, 100), np.uint8), b'labels': [0, 1, 2]}, f)
    raises(ValueError, "is not a CIFAR-10 batch", get_data, 'cifar10', d.parent)
    with open(d/'data_batch_1', 'wb') as f: pickle.dump({'data': 1}, f)
    raises(ValueError, "is not a CIFAR-10 batch (ValueError: no uint8 b'data' array)", get_data, 'cifar10', d.parent)
    (stl/'unlabeled_X.bin').write_bytes(b'\x01' * 1000)
    raises(ValueError, "unlabeled_X.bin' has 1000 bytes, not a whole number of 3x96x96 images", get_data, 'stl10', stl.parent)
    np.array([1, 2], np.uint8).tofile(stl/'test_y.bin')
    raises(ValueError, "test_y.bin' should hold 3 labels in 1..10, found 2", get_data, 'stl10', stl.parent, split='valid')
    np.array([0, 2, 3], np.uint8).tofile(stl/'test_y.bin')
    raises(ValueError, "should hold 3 labels in 1..10, found 3 in 0..3", load_stl10, stl, 'test')
    (folder/'a'/'3.png').write_bytes(b'not an image')
    raises(ValueError, f"folder: could not read image {str(folder/'a'/'3.png')!r}", get_data, 'folder', folder, split='all')
    Image.new('RGB', (4, 4)).save(folder/'loose.png')
    raises(ValueError, "found both loose images (loose.png, ...) and class folders (a, b)", get_data, 'folder', folder)
