"""Training: the trainer loop and hooks, transfer from pretrained weights, layer freezing and training plots.

Import the submodules directly (``yolokit.train.transfer``, ``yolokit.train.freeze``, ``yolokit.train.plots``);
this package imports nothing at import time, so ``import yolokit`` stays light.
"""
