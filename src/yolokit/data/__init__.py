"""Data inputs: predict sources (``data.sources``, ``data.video``, ``data.url``), datasets and synthetic data, and
the training pipeline (``data.augment``, ``data.train_dataset``, ``data.loader``).

Import the submodules directly (``from yolokit.data.sources import open_source``); this package imports nothing so
that ``import yolokit`` stays light.
"""
