"""Published weights by name: ``yolo26n.pt`` -> its spec and the release URL it is fetched from.

Entries are frozen dataclasses in a registry that refuses duplicates. The official YOLOv8 / YOLO11 / YOLO26 detection
checkpoints are published by the reference project as release assets; a mirror (or a local server in tests) is
chosen with the environment variable ``YOLOKIT_WEIGHTS_URL`` (a base URL the file name is appended to).
Whatever is fetched is still read by yolokit's restricted unpickler, so a tampered file cannot run code; pin
``sha256`` to also refuse a file whose bytes differ from the known ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

RELEASE_BASE_URL = "https://github.com/ultralytics/assets/releases/download/v8.4.0/"
BASE_URL_ENV = "YOLOKIT_WEIGHTS_URL"


@dataclass(frozen=True)
class WeightsEntry:
    """A published weights file: ``name`` (``yolo26n.pt``), ``spec`` (``yolo26n.yaml``), optional ``sha256``."""

    name: str
    spec: str
    sha256: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Download URL: ``$YOLOKIT_WEIGHTS_URL`` (or the release base) + file name."""
        base = os.environ.get(BASE_URL_ENV) or RELEASE_BASE_URL
        return base.rstrip("/") + "/" + self.name


_REGISTRY: dict[str, WeightsEntry] = {}


def register(entry: WeightsEntry) -> WeightsEntry:
    """Add ``entry``; a second entry with the same name is a programming error."""
    if entry.name in _REGISTRY:
        raise ValueError(f"weights entry {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def get_entry(name: str) -> WeightsEntry | None:
    """The entry for a published file name (``yolo26n.pt``; a bare ``yolo26n`` gets ``.pt``), or None."""
    key = name if name.endswith(".pt") else f"{name}.pt"
    return _REGISTRY.get(key)


def list_entries() -> list[str]:
    """Names of every registered weights file."""
    return sorted(_REGISTRY)


for _family in ("yolov8", "yolo11", "yolo26"):
    for _scale in "nsmlx":
        register(WeightsEntry(f"{_family}{_scale}.pt", f"{_family}{_scale}.yaml", meta={"task": "detect"}))
