import subprocess
import sys

HEAVY = ("torch", "cv2", "matplotlib", "onnx", "onnxruntime", "PIL")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    return set(filter(None, out.split(",")))


def test_import_yolokit_loads_no_heavy_module():
    assert _loaded_after("import yolokit") == set()


def test_cli_and_facade_import_stay_light():
    assert _loaded_after("import yolokit.cli; from yolokit import YOLO") == set()


def test_public_api_names():
    import yolokit

    assert set(yolokit.__all__) == {"YOLO", "load_weights", "save_weights", "__version__"}
    assert yolokit.__version__.count(".") == 2
