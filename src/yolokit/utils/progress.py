"""Progress bars (tqdm) that stay quiet on non-main ranks and when the caller disables them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from yolokit.utils.dist import is_main_process

T = TypeVar("T")


def progress(iterable: Iterable[T], *, desc: str = "", total: int | None = None, enabled: bool = True,
             unit: str = "it", leave: bool = True) -> Any:
    """Wrap ``iterable`` in a tqdm bar on the main process; return it unchanged elsewhere or when disabled."""
    if not enabled or not is_main_process():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, dynamic_ncols=True)
