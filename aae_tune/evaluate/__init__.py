"""The paper's metrics: the Parzen estimator, every experiment's scores, and the Ray-parallel Table 1 protocol."""
