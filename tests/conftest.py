"Fixtures shared by the test modules."
import os
import pytest

@pytest.fixture(scope='module')
def sgn_cache(tmp_path_factory):
    "A fresh cache folder for the digits classifier, for one test module: it is trained once there, then reused."
    old, d = os.environ.get('SPARSE_GAN_NB_CACHE'), tmp_path_factory.mktemp('sgn-cache')
    os.environ['SPARSE_GAN_NB_CACHE'] = str(d)
    yield d
    if old is None: del os.environ['SPARSE_GAN_NB_CACHE']
    else: os.environ['SPARSE_GAN_NB_CACHE'] = old

def pytest_collection_modifyitems(config, items):
    "Tests marked `cuda` run only where torch sees a GPU."
    import torch
    if torch.cuda.is_available(): return
    skip = pytest.mark.skip(reason='needs a CUDA GPU')
    for item in items:
        if 'cuda' in item.keywords: item.add_marker(skip)
