"""YAML from untrusted files: PyYAML's safe loader, with the alias graph bounded before anything is built.

``yaml.safe_load`` shares aliased nodes, so a "billion laughs" document of a few hundred bytes loads quickly but
expands to 10^9 items as soon as anything walks it (a deep copy, a JSON dump, a repr). :func:`safe_load` composes the
node graph first and counts the nodes the document would expand to (each alias counted as many times as it is
reached, computed once per node), refusing more than ``MAX_NODES``, more than ``MAX_DEPTH`` levels of nesting and
recursive aliases, with a ``yaml.YAMLError`` (which callers already turn into their one-line error).
"""

from __future__ import annotations

from typing import Any

MAX_NODES = 1_000_000
MAX_DEPTH = 100

__all__ = ["MAX_DEPTH", "MAX_NODES", "safe_load"]


def safe_load(text: str, max_nodes: int = MAX_NODES) -> Any:
    """``yaml.safe_load(text)`` that refuses alias bombs, over-deep nesting and recursive aliases (``YAMLError``)."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise yaml.YAMLError(f"the document nests more than {MAX_DEPTH} levels deep") from None
        if node is None:
            return None
        _check_expansion(node, max_nodes)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: Any, max_nodes: int) -> None:
    """Expanded node count and depth of the graph under ``root`` (iterative, memoised per node)."""
    import yaml

    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            depths[key] = 1 + max((depths[id(c)] for c in children), default=0)
            on_path.discard(key)
            if sizes[key] > max_nodes:
                raise yaml.YAMLError(f"the document expands to more than {max_nodes} nodes through its aliases "
                                     "(a 'billion laughs' document); write the values out")
            if depths[key] > MAX_DEPTH:
                raise yaml.YAMLError(f"the document nests more than {MAX_DEPTH} levels deep")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise yaml.YAMLError("the document has a recursive alias (an anchor used inside itself)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
