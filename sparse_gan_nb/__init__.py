"""A notebook-first research library for efficient GANs: sparse-to-sparse training (STU-GAN), discriminator-guided compression (DGL-GAN), architecture search (alphaGAN) and offline evaluators."""

import warnings as _warnings
# fastai 2.8 applies `torch.jit.script` when it is imported, which torch >= 2.9 answers with a FutureWarning that names
# the virtual environment's path. It is about fastai's code, not a user's, so the package hides that one warning
# before any of its modules imports fastai.
_warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)

__version__ = "0.0.1"
