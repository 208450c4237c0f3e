"""Measure how light `import yolokit` is: wall time (median of N fresh interpreters) and which heavy modules load.

    python benchmarks/import_time.py [--runs 5]

Prints a table and writes benchmarks/results/import_time.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "cv2", "matplotlib", "onnx", "onnxruntime", "PIL", "numpy", "safetensors", "yaml")
STATEMENTS = {
    "import yolokit": "import yolokit",
    "import yolokit.cli": "import yolokit.cli",
    "from yolokit import YOLO": "from yolokit import YOLO",
}
PROBE = """
import sys, time
t0 = time.perf_counter()
exec({stmt!r})
dt = time.perf_counter() - t0
heavy = [m for m in {heavy!r} if m in sys.modules]
print(dt, ",".join(heavy))
"""


def measure(stmt: str, runs: int) -> tuple[float, list[str]]:
    times, heavy = [], []
    for _ in range(runs):
        code = PROBE.format(stmt=stmt, heavy=HEAVY)
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
        times.append(float(out[0]) * 1000)
        heavy = out[1].split(",") if len(out) > 1 else []
    return statistics.median(times), heavy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "import_time.json"))
    args = parser.parse_args()
    rows = []
    for label, stmt in STATEMENTS.items():
        ms, heavy = measure(stmt, args.runs)
        rows.append({"statement": label, "median_ms": round(ms, 1), "heavy_modules_loaded": heavy})
    width = max(len(r["statement"]) for r in rows)
    print(f"{'statement':<{width}}  {'median ms':>9}  heavy modules loaded")
    for r in rows:
        print(f"{r['statement']:<{width}}  {r['median_ms']:>9.1f}  {', '.join(r['heavy_modules_loaded']) or '-'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": args.runs, "python": sys.version.split()[0], "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
