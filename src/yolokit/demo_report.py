"""The demo's closing text and picture (:mod:`yolokit.demo`): :func:`format_summary` of ``summary.json``, the format
table (:func:`format_rows`) and the sheet of predictions (:func:`prediction_sheet`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["format_summary", "format_rows", "prediction_sheet"]


def format_summary(summary: dict[str, Any]) -> str:
    """The closing text of the demo, made from ``summary`` alone (so every number in it is one the run wrote)."""
    info, a, ft, sc = summary["info"], summary["train_a"], summary["fine_tune_b"], summary["scratch_b"]
    s = summary["sizes"]
    lines = ["Demo summary" + (" (quick sizes)" if summary["quick"] else ""),
             f"  {info['model']}: {info['layers']} layers, {info['parameters']:,} parameters, "
             f"{info['gflops']:.2f} GFLOPs at {info['imgsz']}",
             f"  A, random weights:      mAP50-95 {summary['random_a']['map']:.4f}  mAP50 "
             f"{summary['random_a']['map50']:.4f}",
             f"  A, trained {s['epochs_a']} epochs:   mAP50-95 {a['map']:.4f}  mAP50 {a['map50']:.4f}  -> "
             f"{a['version']}",
             f"  B, fine-tuned {s['epochs_b']} epochs: mAP50-95 {ft['map']:.4f}  mAP50 {ft['map50']:.4f}  -> "
             f"{ft['version']} (child of {ft['parent']}; transferred {ft['transferred']}/{ft['tensors']} tensors)",
             f"  B, from scratch {s['epochs_b']} epochs: mAP50-95 {sc['map']:.4f}  mAP50 {sc['map50']:.4f}",
             *format_rows(summary["formats"], summary["production"]["version"])]
    p, d = summary["predict"], summary["diff"]
    movers = ", ".join(f"{e['layer']} {e['rel_l2']:.3f}" for e in d["top_layers"])
    lines += [f"  production rule: {summary['production_rule']} -> {summary['production']['version']}",
              f"  {p['model']} ({p['version']}): {p['boxes']} boxes on {p['images']} images",
              f"  weights {d['a']} -> {d['b']}: {d['changed']}/{d['tensors']} tensors changed, relative L2 "
              f"{d['rel_l2']:.3f}; moved most: {movers}",
              "  seconds per step (wall / CPU): " + "  ".join(
                  f"[{k}] {v['wall']:.0f}/{v['cpu']:.0f}" for k, v in summary["step_seconds"].items()),
              f"  time: {summary['time']['wall_s']:.0f} s wall, {summary['time']['cpu_s']:.0f} s CPU "
              f"(load average {summary['time']['load_average_start']} at the start, "
              f"{summary['time']['load_average']} at the end)",
              "Written:"]
    lines += [f"  {kind:<16} {path}" for kind, path in summary["paths"].items()]
    return "\n".join(lines)


def format_rows(rows: list[dict[str, Any]], production: str) -> list[str]:
    """The format table: version, size (MB = 10^6 bytes), paired latency (median ms, batch 1), mAP50-95, mAP50."""
    lines = [f"  {'format':<14}{'version':<10}{'size MB':>8}{'latency ms':>12}{'mAP50-95':>10}{'mAP50':>8}"]
    for row in rows:
        mark = "  <- production" if row["version"] == production else ""
        lines.append(f"  {row['format']:<14}{row['version']:<10}{row['size_bytes'] / 1e6:>8.2f}"
                     f"{row['latency_ms']:>12.2f}{row['map']:>10.4f}{row['map50']:>8.4f}{mark}")
    return lines


def prediction_sheet(results: list[Any], path: Path, columns: int = 2, scale: int = 2) -> Path:
    """The predictions on one small PNG sheet: each image enlarged ``scale`` x (nearest neighbour) and its boxes
    drawn at that size (thinner lines and text than on the small original), 64-colour palette."""
    import cv2
    import numpy as np
    from PIL import Image

    from yolokit.predict.draw import draw_boxes

    tiles = []
    for r in results:
        tile = cv2.resize(r.orig_img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        data = r.boxes.data
        tiles.append(draw_boxes(tile, r.boxes.xyxy * scale, data[:, -1], data[:, -2], r.names)[:, :, ::-1])
    h, w = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    sheet = np.full((-(-len(tiles) // columns) * h, min(columns, len(tiles)) * w, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        y, x = (i // columns) * h, (i % columns) * w
        sheet[y: y + tile.shape[0], x: x + tile.shape[1]] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).quantize(colors=64, dither=Image.Dither.NONE).save(path, optimize=True)
    return path
