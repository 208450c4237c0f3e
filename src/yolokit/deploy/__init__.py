"""Deployment: exports checked end to end (:mod:`yolokit.deploy.pipeline`: parity with the PyTorch weights, latency,
mAP, INT8 budget) and the format table (:mod:`yolokit.deploy.benchmark`).

This layer sits above ``eval`` and ``backends`` (it validates and runs what it exports) and below ``model`` (the
``YOLO`` facade calls it). Nothing is imported here.
"""
