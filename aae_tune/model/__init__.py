"""The AAE and its variants (torch): priors, networks, the phase-based model, the registry, model files."""
