"""Training: the trainer loop and hooks, optimizers and schedule, exact resume, transfer, freezing and plots.

Entry point: :func:`yolokit.train.api.train` (``YOLO.train`` and ``yolokit train`` call it); settings:
:class:`yolokit.train.config.TrainConfig`. Import the submodules directly (``yolokit.train.api``,
``yolokit.train.trainer``, ``yolokit.train.transfer``, ``yolokit.train.freeze``, ``yolokit.train.plots``); this
package imports nothing at import time, so ``import yolokit`` stays light.
"""
