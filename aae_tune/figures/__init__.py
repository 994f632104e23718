"""The paper's figures as PNG files: image grids, latent scatters, and each model's figure set."""

import matplotlib

matplotlib.use("Agg")  # files only: no display on cluster nodes or CI
