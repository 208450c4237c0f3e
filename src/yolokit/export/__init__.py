"""Export and alternative runtimes: ONNX export (:mod:`yolokit.export.onnx`) and the ONNX Runtime inference backend
(:mod:`yolokit.export.runtime`). Nothing heavy is imported here; ``onnx`` and ``onnxruntime`` load on first use."""
