"""A notebook-first research library for efficient GANs: sparse-to-sparse training (STU-GAN), discriminator-guided compression (DGL-GAN), architecture search (alphaGAN) and offline evaluators.

Modules:

- `sparse_gan_nb.data`: Digits, stacked digits and 2-D Gaussian mixtures built in; CIFAR-10, STL-10 and image folders read from a local path; one `get_data` entry point and seeded fastai `DataLoaders` whose order a resumed run can rebuild."""

__version__ = "0.0.1"
