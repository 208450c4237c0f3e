"""Exception hierarchy. Every user-facing failure is a ``YolokitError`` with a one-line message that says
what was expected, what was found and what to do. The CLI prints it and exits with status 2."""

from __future__ import annotations


class YolokitError(Exception):
    """Base class of every error yolokit raises on purpose."""


class ConfigError(YolokitError, ValueError):
    """A bad argument or key=value setting."""


class SpecError(YolokitError, ValueError):
    """A model layer spec (YAML rows) that cannot be parsed or built."""


class WeightsError(YolokitError):
    """A weights file that cannot be read, or tensors that do not fit the model."""


class UnsafeWeightsError(WeightsError):
    """A pickle that references a global outside the allow-list. Nothing was executed."""


class SourceError(YolokitError):
    """A predict source (image, video, URL, array) that cannot be read."""


class DatasetError(YolokitError):
    """A dataset YAML, image folder or label file that cannot be used."""


class ExportError(YolokitError):
    """An export or quantization that failed or missed its accuracy budget."""


class RegistryError(YolokitError):
    """A weights registry operation that failed."""


class UntrustedCodeError(WeightsError):
    """A file that carries code (a TorchScript program) from a source not marked as trusted. Nothing was executed."""


class OutputPathError(ConfigError, OSError):
    """An output file or folder that cannot be written (checked before the work that would fill it starts)."""
