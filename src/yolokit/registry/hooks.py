"""Registering from the other modes, and loading ``registry://`` references.

    register_file("yolo-demo", "best.safetensors")                        # = Registry().register(...)
    register_trained("yolo-demo", "runs/train/weights/best.safetensors", parent_weights="pretrained.safetensors")
    register_export("yolo-demo", "model.onnx", source_version="yolo-demo:2")    # a child of yolo-demo:2
    loaded = load_uri("registry://yolo-demo@production")                  # hash verified before use

``YOLO.export(..., register="NAME")`` calls :func:`register_export`; a training entry point calls
:func:`register_trained` with its best weights and the weights it started from.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from yolokit.registry.names import parse_ref
from yolokit.registry.records import Version
from yolokit.registry.registry import Registry

__all__ = ["resolve", "register_file", "register_trained", "register_export", "load_uri", "LoadedVersion"]

logger = logging.getLogger(__name__)
PathLike = str | os.PathLike


def resolve(ref: str, registry: PathLike | None = None) -> Version:
    """The version ``ref`` (``NAME:N``, ``NAME@ALIAS``, ``NAME``, optionally ``registry://``) names."""
    return Registry(registry).resolve(ref)


def register_file(name: str, weights_file: PathLike, *, registry: PathLike | None = None, **options: Any) -> Version:
    """``Registry(registry).register(name, weights_file, **options)``."""
    return Registry(registry).register(name, weights_file, **options)


def _registered(reg: Registry, path: PathLike) -> Version | None:
    """The first version holding exactly the bytes of ``path``, or None."""
    from yolokit.utils.io import sha256_file

    found = reg.find_sha256(sha256_file(path))
    return found[0] if found else None


def register_trained(name: str, best: PathLike, *, parent_weights: PathLike | None = None,
                     parent: str | None = None, registry: PathLike | None = None, **options: Any) -> Version:
    """Register a training run's best weights as the next ``name:N``, linked to what the run started from.

    The parent is ``parent`` (a ``NAME:N`` reference) if given, else the registered version with the bytes of
    ``parent_weights``, else the version matching the weights' own ``parent_sha256`` metadata (which the trainer
    writes); with none registered, no parent is recorded. The relation of a found parent is ``finetuned``.
    """
    reg = Registry(registry)
    if parent is None and parent_weights is not None:
        found = _registered(reg, parent_weights)
        parent = found.ref if found else None
        if found is None:
            logger.info("the weights training started from (%s) are not registered: no parent given", parent_weights)
    if parent is not None:
        options.setdefault("relation", "finetuned")
    return reg.register(name, best, parent=parent, **options)


def register_export(name: str, exported: PathLike, *, source_version: str | None = None,
                    source_path: PathLike | None = None, registry: PathLike | None = None,
                    **options: Any) -> Version:
    """Register an exported file as a child of the version it was exported from.

    That version is ``source_version`` (``NAME:N``, e.g. the one a ``registry://`` model was loaded from), else the
    registered version with the bytes of ``source_path``; weights not registered yet are registered first under
    ``name``. With neither (a model built in memory), the export is registered without a parent. The relation is
    inferred: ``exported`` (ONNX), ``quantized`` (INT8), ``converted`` (another format or precision).
    """
    reg = Registry(registry)
    parent = source_version
    if parent is None and source_path is not None:
        found = _registered(reg, source_path)
        parent = (found or reg.register(name, source_path)).ref
    if parent is None:
        logger.warning("exported %s from a model with no weights file: registered without a parent", exported)
    return reg.register(name, exported, parent=parent, **options)


@dataclasses.dataclass
class LoadedVersion:
    """A version loaded through the registry: a ``model`` (PyTorch weights) or ``onnx_bytes`` (an ONNX graph)."""

    version: Version
    path: Path
    model: Any = None
    onnx_bytes: bytes | None = None


def load_uri(uri: str, registry: PathLike | None = None) -> LoadedVersion:
    """Load ``registry://NAME:N`` / ``NAME@ALIAS`` / ``NAME``: the blob's sha256 is checked before the bytes are
    used (``RegistryError`` naming the version for a missing or modified file); the model is built from them."""
    reg = Registry(registry)
    version = reg.resolve(parse_ref(uri))
    path = reg.store.path_for(version.sha256)
    if version.format == "onnx":
        return LoadedVersion(version, path, onnx_bytes=reg.store.open_verified(version.sha256, version.ref))
    from yolokit.weights.load import build_from_weights

    model = build_from_weights(reg.verified_weights(version))
    logger.info("Loaded %s (sha256 %s... verified)", version.ref, version.sha256[:12])
    return LoadedVersion(version, path, model=model)
