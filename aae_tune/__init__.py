"""aae_tune: hyperparameter search for adversarial autoencoders (Makhzani et al., 2015)."""

__version__ = "0.1.0"
