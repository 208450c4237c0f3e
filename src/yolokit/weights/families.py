"""Checkpoints yolokit recognises but cannot load (yet), named in words: the one table of those messages.

A weights file yolokit refuses should say what it is, not only that a global is outside the allow-list:
"this is a YOLOv7 checkpoint; YOLOv7 import is not supported yet" instead of "UNSAFE ... must not be loaded".
Two kinds are recognised from what a scan of the pickle found (``GlobalRef``\\ s; nothing here reads a file):

- :data:`FOREIGN_FAMILIES`: checkpoints of other code bases, by the modules their pickled classes come from
  (the yolov5 repository pickles ``models.yolo.Model`` and ``models.common.Conv``...). The first entry that matches
  wins, so specific entries (YOLOv7, YOLOv9 share YOLOv5's module names) come first. A family matches only when
  every global outside the allow-list belongs to it (or is a ``torch.nn`` layer): a file that also names, say,
  ``os.system`` is reported as unsafe, naming that global.
- reference (Ultralytics) checkpoints of a task the readers do not take (segmentation, pose, ...), by their model
  class (``ultralytics.nn.tasks.SegmentationModel``); the tasks read are ``weights.metadata.TASKS``.

When a family lands, its entry goes and the readers take the file. YOLOv5 detection checkpoints landed
(``weights.yolov5``: their classes are on the allow-list, so no entry here matches them); what remains of YOLOv5 here
are the files yolokit still cannot rebuild: v7.0 segmentation / classification models, and models with layers
outside the ones it has (``C3TR``, ``GhostConv``, ... are named in the message).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Family", "FOREIGN_FAMILIES", "TASK_MODELS", "TASK_WORDS", "identify_family", "unsupported_message",
           "reference_task_message"]


@dataclass(frozen=True)
class Family:
    """A checkpoint family yolokit does not read: ``name`` (``"YOLOv5"``), ``description`` (what the file is),
    ``modules`` (module prefixes of its pickled classes), ``markers`` (class names of which one must appear, to tell
    apart families that share modules; empty: any), ``advice`` (what to do instead), ``reason`` (what yolokit lacks;
    default ``"<name> import is not supported yet"``)."""

    name: str
    description: str
    modules: tuple[str, ...]
    markers: tuple[str, ...] = ()
    advice: str = "use a YOLOv8, YOLO11 or YOLO26 checkpoint (.pt of the reference implementation, or yolokit's)"
    reason: str = ""

    def owns(self, ref: Any) -> bool:
        return any(ref.module == m or ref.module.startswith(m + ".") or (m.endswith(".") and ref.module.startswith(m))
                   for m in self.modules)

    def matches(self, refs: list[Any]) -> bool:
        """Some of its classes are refused (not on the allow-list), markers present, and nothing else refused."""
        own = [ref for ref in refs if self.owns(ref)]
        if not any(not ref.allowed for ref in own) or (self.markers and not any(r.name in self.markers for r in own)):
            return False
        return all(ref.allowed or self.owns(ref) or ref.module.startswith("torch.nn.") for ref in refs)


_YOLO_REPO = ("models.yolo", "models.common", "models.experimental", "utils.")
FOREIGN_FAMILIES: tuple[Family, ...] = (
    Family("YOLOv9", "a YOLOv9 checkpoint (from the WongKinYiu/yolov9 repository)", _YOLO_REPO,
           markers=("RepNCSPELAN4", "ADown", "SPPELAN", "CBLinear", "CBFuse", "DDetect", "DualDDetect")),
    Family("YOLOv7", "a YOLOv7 checkpoint (from the WongKinYiu/yolov7 repository)", _YOLO_REPO,
           markers=("IDetect", "IAuxDetect", "IBin", "IKeypoint", "SPPCSPC", "ImplicitA", "ImplicitM", "RepConv")),
    Family("YOLOv5-seg/cls", "a YOLOv5 segmentation or classification checkpoint (ultralytics/yolov5 v7.0)",
           _YOLO_REPO, markers=("SegmentationModel", "ClassificationModel", "Segment", "Proto", "Classify"),
           reason="only YOLOv5 detection checkpoints are supported",
           advice="load a YOLOv5 detection checkpoint, or a YOLOv8/YOLO11/YOLO26 segmentation/classification one"),
    Family("YOLOv5", "a YOLOv5 checkpoint (from the ultralytics/yolov5 repository) with layers yolokit does not "
           "rebuild", _YOLO_REPO, reason="these layers are not supported",
           advice="yolokit rebuilds YOLOv5 detection models made of Conv, Focus, Bottleneck, C3, BottleneckCSP, "
           "SPP, SPPF, Concat, Upsample and Detect layers (releases v1.0-v7.0)"),
    Family("YOLOX", "a YOLOX checkpoint (from the Megvii-BaseDetection/YOLOX repository)", ("yolox",)),
    Family("torchvision", "a torchvision model pickled whole", ("torchvision.models",),
           advice="save its state_dict and build the model in your own code; yolokit reads YOLO checkpoints"),
)

# Reference model classes -> task (``ultralytics.nn.tasks.<class>``).
TASK_MODELS = {
    "DetectionModel": "detect", "YOLOv10DetectionModel": "detect", "SegmentationModel": "segment",
    "PoseModel": "pose", "OBBModel": "obb", "ClassificationModel": "classify", "RTDETRDetectionModel": "rtdetr",
    "WorldModel": "world", "YOLOEModel": "yoloe", "YOLOESegModel": "yoloe-segment",
}  # fmt: skip
TASK_WORDS = {
    "detect": "detection", "segment": "segmentation", "pose": "pose", "obb": "oriented-box (OBB)",
    "classify": "classification", "rtdetr": "RT-DETR", "world": "YOLO-World", "yoloe": "YOLOE",
    "yoloe-segment": "YOLOE segmentation",
}  # fmt: skip


def identify_family(refs: list[Any]) -> Family | None:
    """The first :data:`FOREIGN_FAMILIES` entry that matches the scanned globals, else None (also for a reference
    checkpoint: its model class is an ``ultralytics.nn.tasks`` one)."""
    if any(ref.module == "ultralytics.nn.tasks" for ref in refs):
        return None
    return next((family for family in FOREIGN_FAMILIES if family.matches(refs)), None)


def reference_task_message(path: str | Path, type_name: str, task: str) -> str:
    """``"<path>: this is a reference (Ultralytics) segmentation checkpoint (SegmentationModel); ..."``."""
    from yolokit.weights.metadata import TASKS

    words = TASK_WORDS.get(task, f"'{task}'")
    readable = " and ".join(TASK_WORDS.get(t, t) for t in TASKS)
    return (f"{path}: this is a reference (Ultralytics) {words} checkpoint ({type_name}, {task} task); {words} "
            f"checkpoints are not supported yet: yolokit reads {readable} checkpoints (YOLOv8 / YOLO11 / YOLO26)")


def _reference_task(refs: list[Any]) -> tuple[str, str] | None:
    """``(model class, task)`` of a reference checkpoint whose task the readers do not take, if the globals say so
    and every refused global is a reference layer (a newer head such as ``Segment26``)."""
    from yolokit.weights.metadata import TASKS

    model = next((ref for ref in refs if ref.module == "ultralytics.nn.tasks" and ref.name in TASK_MODELS), None)
    if model is None or TASK_MODELS[model.name] in TASKS:
        return None
    layers = ("ultralytics.nn.", "torch.nn.")
    if not all(ref.allowed or ref.module.startswith(layers) for ref in refs):
        return None
    return model.name, TASK_MODELS[model.name]


def unsupported_message(refs: list[Any], path: str | Path) -> str | None:
    """The one-line reason a file of a recognised family cannot be loaded (``None``: not recognised)."""
    family = identify_family(refs)
    if family is not None:
        own = sorted((ref for ref in refs if family.owns(ref)), key=lambda ref: ref.allowed)  # refused ones first
        examples = ", ".join(list(dict.fromkeys(ref.resolved for ref in own))[:3])
        reason = family.reason or f"{family.name} import is not supported yet"
        return (f"{path}: this is {family.description}; {reason} (its pickle names {examples}; yolokit did not "
                f"unpickle it, nothing was executed): {family.advice}")
    task = _reference_task(refs)
    if task is not None:
        return reference_task_message(path, *task)
    return None
