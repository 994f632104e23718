"""The shipped search spaces, one YAML file per experiment (installed as the package data of
``aae_tune.search_spaces``; ``aae_tune.search.space`` finds them with ``importlib.resources``)."""
