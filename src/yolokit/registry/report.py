"""Text of the registry commands: ``list``, ``show``, ``history``, ``lineage``, ``audit``, ``diff``, ``gc``.

Pure functions from records (or the diff dict) to strings; the CLI prints them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from yolokit.registry.records import AuditEntry, GcReport, Lineage, ModelSummary, Version

__all__ = ["format_list", "format_version", "format_history_line", "format_lineage", "format_audit", "format_diff",
           "format_gc"]


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    from yolokit.utils.io import format_size

    return format_size(n)


def _value(value: Any, width: int = 0) -> str:
    if value is None or value == "" or value == {}:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str, separators=(",", ":"))
    else:
        text = str(value)
    if len(text) > 72:
        text = text[:69] + "..."
    return text.ljust(width) if width else text


def format_list(models: list[ModelSummary]) -> str:
    if not models:
        return "The registry is empty: register weights with 'yolokit registry register NAME FILE'"
    width = max(len(m.name) for m in models)
    lines = [f"{'MODEL'.ljust(width)}  VERSIONS  LATEST  ALIASES"]
    for m in models:
        aliases = ", ".join(f"{a} -> :{n}" for a, n in m.aliases.items()) or "-"
        latest = f":{m.latest}" if m.latest else "-"
        lines.append(f"{m.name.ljust(width)}  {str(m.versions).ljust(8)}  {latest.ljust(6)}  {aliases}")
    return "\n".join(lines)


def format_history_line(v: Version) -> str:
    """``NAME:N  created  format precision  params  size  sha256[:12]  [aliases]  relation <- parent  note``."""
    parts = [v.ref, v.created, f"{v.format} {v.precision}", f"{v.parameters or 0:,} params", _size(v.file_size),
             v.sha256[:12]]
    if v.aliases:
        parts.append("@" + ",@".join(v.aliases))
    if v.parent:
        parts.append(f"{v.relation} <- {v.parent}{' (deleted)' if v.parent_deleted else ''}")
    if v.note:
        parts.append(repr(v.note))
    return "  ".join(parts)


_TRAIN_KEYS = ("data", "epochs", "batch", "imgsz", "optimizer", "lr0", "freeze", "seed")


def _pairs(values: dict[str, Any]) -> str:
    """``key value, ...`` with floats to 4 significant digits; ``-`` when empty."""
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {_value(v)}" for k, v in values.items()) or "-"


def format_version(v: Version, children: list[Version] | None = None) -> str:
    names = ", ".join(f"{k} {n}" for k, n in list(v.names.items())[:10])
    more = f", ... (+{len(v.names) - 10})" if len(v.names) > 10 else ""
    rows = [
        ("Version", v.ref), ("SHA-256", v.sha256), ("Format", f"{v.format}, {v.precision}"),
        ("Model", f"{v.architecture or '?'} (scale {v.scale or '?'}), task {v.task or '?'}"),
        ("Classes", f"{len(v.names)}: {names}{more}"), ("Parameters", f"{v.parameters or 0:,}"),
        ("File size", f"{_size(v.file_size)} ({v.file_size:,} bytes)"),
        ("Parent", f"{v.parent} ({v.relation}){' - deleted' if v.parent_deleted else ''}" if v.parent else "-"),
        ("Children", ", ".join(f"{c.ref} ({c.relation})" for c in children or []) or "-"),
        ("Aliases", ", ".join(v.aliases) or "-"), ("Tags", ", ".join(f"{k}={t}" for k, t in v.tags.items()) or "-"),
        ("Note", v.note or "-"), ("Metrics", _pairs(v.metrics)), ("Dataset", v.dataset_fingerprint or "-"),
        ("Train args", _pairs({k: v.train_args[k] for k in _TRAIN_KEYS if k in v.train_args})
         + (f" ({len(v.train_args)} settings; --json lists all)" if v.train_args else "")),
        ("Created", f"{v.created} by {v.user}@{v.host}"),
        ("Source", v.source or "-"),
    ]
    return "\n".join(f"{label.ljust(11)} {text}" for label, text in rows)


def _node(v: Version, selected: Version) -> str:
    relation = f"[{v.relation}] " if v.relation else ""
    mark = "   <- this version" if v.id == selected.id else ""
    alias = f" @{',@'.join(v.aliases)}" if v.aliases else ""
    return f"{relation}{v.ref}  {v.format} {v.precision}  {v.sha256[:12]}{alias}{mark}"


def format_lineage(lineage: Lineage) -> str:
    """Ancestors from the root down to the version, then the version's descendants as a tree."""
    chain = [*lineage.ancestors, lineage.version]
    lines = []
    if lineage.version.parent_deleted or (lineage.ancestors and lineage.ancestors[0].parent_deleted):
        first = lineage.ancestors[0] if lineage.ancestors else lineage.version
        lines.append(f"({first.parent}: deleted)")
    for depth, version in enumerate(chain):
        lines.append(("   " * (depth - 1) + "└─ " if depth else "") + _node(version, lineage.version))

    def walk(version_id: int, prefix: str) -> None:
        kids = lineage.children.get(version_id, [])
        for i, child in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{_node(child, lineage.version)}")
            walk(child.id, prefix + ("   " if last else "│  "))

    walk(lineage.version.id, "   " * (len(chain) - 1))
    return "\n".join(lines)


def format_audit(entries: list[AuditEntry]) -> str:
    if not entries:
        return "(no entries)"
    lines = []
    for e in entries:
        if e.action in ("alias", "unalias"):
            what = f"{e.action} {e.alias}: {_num(e.from_number)} -> {_num(e.to_number)}"
        elif e.action == "delete":
            what = f"delete :{e.from_number}"
        else:
            what = f"{e.action} :{e.to_number}"
        detail = f"  ({e.detail})" if e.detail else ""
        lines.append(f"{e.at}  {e.user}@{e.host}  {what}{detail}")
    return "\n".join(lines)


def _num(n: int | None) -> str:
    return f":{n}" if n is not None else "-"


def format_gc(report: GcReport) -> str:
    verb = "would remove" if report.dry_run else "removed"
    return (f"gc {verb} {len(report.removed)} unreferenced blob(s) ({_size(report.freed_bytes)}) and "
            f"{report.temp_files} temp file(s); {report.kept} blob(s) in use")


def _rel(x: float | None) -> str:
    if x is None:
        return "-"
    return "inf" if math.isinf(x) else f"{x:.3e}" if 0 < x < 1e-3 else f"{x:.4f}"


def format_diff(diff: dict[str, Any]) -> str:
    lines = [f"diff {diff['a']} -> {diff['b']}", "Metadata"]
    same = [r["field"] for r in diff["metadata"] if r["same"]]
    for row in diff["metadata"]:
        if not row["same"]:
            lines.append(f"  {row['field'].ljust(20)} {_value(row['a'], 24)} -> {_value(row['b'])}")
    lines.append(f"  same: {', '.join(same) or '-'}")
    lines += _metric_lines(diff)
    lines += _class_lines(diff["classes"])
    arch = diff["architecture"]
    if not arch["rows"]:
        keys = "; spec keys differ:" if arch["keys"] else ""
        lines.append(f"Architecture: {'identical' if not keys else 'same'} {arch['layers_a']} layer rows{keys}")
    else:
        lines.append(f"Architecture: {len(arch['rows'])} layer row(s) differ "
                     f"({arch['layers_a']} -> {arch['layers_b']} rows)")
        lines += [f"  row {i}: {_value(ra)} -> {_value(rb)}" for i, ra, rb in arch["rows"]]
    lines += [f"  {k['key']}: {_value(k['a'])} -> {_value(k['b'])}" for k in arch["keys"]]
    lines += _weight_lines(diff["weights"])
    return "\n".join(lines)


def _metric_lines(diff: dict[str, Any]) -> list[str]:
    lines = ["Metrics" if diff["metrics"] else "Metrics: none recorded"]
    for row in diff["metrics"]:
        delta = f"  ({row['delta']:+.4f})" if row["delta"] is not None else ""
        lines.append(f"  {row['key'].ljust(20)} {_value(row['a'], 12)} -> {_value(row['b'])}{delta}")
    changed = sorted(diff["train_args"], key=lambda r: (r["a"] is None) or (r["b"] is None))  # both set first
    if changed:
        more = f" (+{len(changed) - 8} more; --json lists all)" if len(changed) > 8 else ""
        lines.append(f"Train args: {len(changed)} differ: " + ", ".join(
            f"{r['key']} {_value(r['a'])} -> {_value(r['b'])}" for r in changed[:8]) + more)
    return lines


def _class_lines(classes: dict[str, Any]) -> list[str]:
    if not (classes["added"] or classes["removed"] or classes["renamed"]):
        return [f"Classes: identical ({classes['a']})"]
    lines = [f"Classes: {classes['a']} -> {classes['b']}: {len(classes['added'])} added, "
             f"{len(classes['removed'])} removed, {len(classes['renamed'])} renamed"]
    lines += [f"  + {i} {n}" for i, n in classes["added"]]
    lines += [f"  - {i} {n}" for i, n in classes["removed"]]
    lines += [f"  ~ {i} {old} -> {new}" for i, old, new in classes["renamed"]]
    return lines


def _weight_lines(w: dict[str, Any]) -> list[str]:
    quant = w["mode"] == "quantization"
    head = (f"Weights ({w['compared']}): {w['tensors']} tensors compared, {w['changed']} changed, "
            f"{w['unchanged']} unchanged; overall relative L2 {_rel(w['rel_l2'])}")
    lines = [head]
    if quant:
        stored = ", ".join(f"{dtype} {n}" for dtype, n in w["stored"].items())
        lines.append(f"  quantization error of the dequantized tensors; {w['quantized']} stored as INT8 ({stored})")
    if w["reshaped"] or w["only_a"] or w["only_b"]:
        lines.append(f"  reshaped {len(w['reshaped'])}, only in A {len(w['only_a'])}, only in B {len(w['only_b'])}"
                     + "".join(f"; {r['name']} {r['a']} -> {r['b']}" for r in w["reshaped"][:3]))
    lines.append(f"  {'layer'.ljust(10)} {'tensors':>7} {'changed':>7}  {'rel L2':>10}  {'max |d|':>10}  status")
    for e in w["layers"]:
        status = "quantized" if quant and e["status"] == "changed" else e["status"]
        lines.append(f"  {e['layer'].ljust(10)} {e['tensors']:>7} {e['changed']:>7}  {_rel(e['rel_l2']):>10}  "
                     f"{_rel(e['max_abs']):>10}  {status}")
    if not quant:
        lines.append(f"  frozen (unchanged) layers: {', '.join(w['frozen_layers']) or 'none'}")
    if w["top"]:
        lines.append("  largest quantization errors:" if quant else "  largest movers:")
        lines += [f"    {t['name']}  rel L2 {_rel(t['rel_l2'])}  max |d| {_rel(t['max_abs'])}" for t in w["top"]]
    return lines
