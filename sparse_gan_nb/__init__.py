"""A notebook-first research library for efficient GANs: sparse-to-sparse training (STU-GAN), discriminator-guided compression (DGL-GAN), architecture search (alphaGAN) and offline evaluators."""

__version__ = "0.0.1"
