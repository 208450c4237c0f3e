"""Export: ONNX export (:mod:`yolokit.export.onnx`) and the on-disk cache of exported graphs
(:mod:`yolokit.export.graph_cache`). The ONNX Runtime backend lives in :mod:`yolokit.backends` (which imports export,
never the reverse). Nothing heavy is imported here; ``onnx`` loads on first use."""
