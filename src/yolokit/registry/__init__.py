"""The weights registry: versions, aliases, lineage, diffs and verified loading, in a directory, with no server.

    from yolokit.registry import Registry
    reg = Registry()                                 # $YOLOKIT_REGISTRY, else ~/.yolokit/registry
    reg.register("yolo-demo", "best.safetensors")    # -> Version yolo-demo:1 (format, precision, classes, ...)
    reg.alias("yolo-demo:1", "production")
    YOLO("registry://yolo-demo@production")          # the blob's sha256 is checked on every load

Modules: ``names`` (names, references, location), ``store`` (content-addressed blobs), ``db`` (SQLite schema and
migrations), ``records`` (records and read queries), ``describe`` (what a weights file is), ``registry``
(``Registry``), ``diff`` / ``weight_diff`` / ``onnx_weights`` (version diffs), ``report`` (command texts), ``hooks``
(registration from train / export, ``registry://`` loading), ``cli`` (``yolokit registry ...``).
Importing this package imports neither torch nor onnx; the names below are imported from their module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolokit.utils.lazy import lazy_getattr

__all__ = ["Registry", "Version", "Ref", "parse_ref", "resolve", "register_file", "register_trained",
           "register_export", "load_uri", "URI_SCHEME"]

_LAZY = {
    "Registry": "yolokit.registry.registry",
    "Version": "yolokit.registry.records",
    "Ref": "yolokit.registry.names",
    "parse_ref": "yolokit.registry.names",
    "URI_SCHEME": "yolokit.registry.names",
    "resolve": "yolokit.registry.hooks",
    "register_file": "yolokit.registry.hooks",
    "register_trained": "yolokit.registry.hooks",
    "register_export": "yolokit.registry.hooks",
    "load_uri": "yolokit.registry.hooks",
}

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.registry.hooks import load_uri, register_export, register_file, register_trained, resolve
    from yolokit.registry.names import URI_SCHEME, Ref, parse_ref
    from yolokit.registry.records import Version
    from yolokit.registry.registry import Registry


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
