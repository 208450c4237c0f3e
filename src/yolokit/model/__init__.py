"""The ``YOLO`` facade: one object that holds a model's weights and runs every mode on them.

    model = YOLO("yolo26n.yaml")            # shipped spec, random init (scale from the name)
    model = YOLO("best.pt")                 # reference (Ultralytics) checkpoint, imported without executing code
    model = YOLO("yolo26n.safetensors")     # native weights with metadata
    model = YOLO("yolo26n.pt")              # published name or URL: downloaded once to the cache, then imported
    model = YOLO("yolo26n.onnx")            # exported ONNX model: predict and val only (ONNX Runtime, CPU)
    model.info()
    results = model("bus.jpg", conf=0.5)
    metrics = model.val(data="data.yaml")
    model.save("copy.safetensors")
    model.export(format="onnx")             # -> yolo26n.onnx beside the weights

Everything task-specific (model builder, predictor, validator, trainer, settings classes) comes from the task's entry
in :mod:`yolokit.tasks`, keyed by the task of what was loaded. Settings are checked before any work starts: ranges
when the settings object is built, and here the parts that need the model (``imgsz`` rounded up to the stride,
``classes`` within the model's classes, the device present).

The package: :mod:`~yolokit.model.facade` (the ``YOLO`` class), :mod:`~yolokit.model.loading` (what a source is,
and loading it) and :mod:`~yolokit.model.settings` (the settings checks and defaults that need the model). Import
``YOLO`` from here (or ``from yolokit import YOLO``).
"""

from yolokit.model.facade import EXPORT_FORMATS, YOLO
from yolokit.model.loading import SPEC_SUFFIXES
from yolokit.model.settings import check_device_present

__all__ = ["EXPORT_FORMATS", "SPEC_SUFFIXES", "YOLO"]

_check_device_present = check_device_present  # the name yolokit.cli imports
