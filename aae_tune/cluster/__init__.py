"""Ray sessions, the local multi-node cluster with an MLflow server, and the MLflow UI in headless Chromium."""
