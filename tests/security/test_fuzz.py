"""Class 6: property-based fuzzing of the readers (hypothesis), on a bounded budget (the whole file runs in well under
a minute on 2 busy cores). Readers in C-backed code paths (torch archives, safetensors, image decoders) are fuzzed in
a child with a memory cap and a timeout (a crash or hang fails the test with its signal); pure-Python parsers (YAML,
label rows, ONNX metadata checks) in process. Any finding is shrunk by hypothesis and kept below as a regression test.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_helpers import run_cases

from yolokit.errors import DatasetError, ExportError, YolokitError

HERE = Path(__file__).resolve().parent
# CI runs a fixed, derandomized budget; YOLOKIT_FUZZ_EXAMPLES=5000 runs a deeper random search locally.
DEEP = int(os.environ.get("YOLOKIT_FUZZ_EXAMPLES", "0"))
FAST = settings(max_examples=DEEP or 150, deadline=None, database=None, derandomize=not DEEP,
                suppress_health_check=list(HealthCheck))  # fmt: skip
EXAMPLES = {name: DEEP or 300 for name in ("pickles", "files", "images")}


@pytest.mark.slow
def test_fuzz_readers_in_a_capped_child():
    cases = {name: f"import fuzz_targets\nresult = fuzz_targets.run({name!r}, {n})" for name, n in EXAMPLES.items()}
    for name, outcome in run_cases(cases, headroom_mb=600, timeout=150 + DEEP, cwd=HERE).items():
        assert outcome.kind == "ok", (name, outcome.type, outcome.message, outcome.detail)
        assert outcome.result == str(EXAMPLES[name])


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                        max_size=4), max_leaves=12)
shape_dims = st.lists(st.one_of(st.integers(-2, 100), st.text(max_size=3)), max_size=5)


@FAST
@given(st.dictionaries(st.sampled_from(["names", "stride", "imgsz", "dynamic", "nms_free", "end2end", "max_det",
                                        "task", "embedded_nms"]), json_values), shape_dims, shape_dims)
def test_fuzz_onnx_metadata_checks(meta, input_shape, output_shape):
    from yolokit.backends.onnx_checks import check_onnx_metadata

    try:
        check_onnx_metadata(meta, input_shape, output_shape)
    except ExportError as error:
        assert "\n" not in str(error)


@FAST
@given(st.dictionaries(st.text(max_size=6), st.text(max_size=30), max_size=6))
def test_fuzz_onnx_metadata_decoding(props):
    from yolokit.backends.onnx_checks import check_onnx_metadata
    from yolokit.export.onnx import decode_metadata

    try:
        meta = decode_metadata(props)
    except (ValueError, TypeError):
        return  # the backend turns these into one ExportError line (test_one_line)
    try:
        check_onnx_metadata(meta, [1, 3, 64, 64], [1, 6, 100])
    except ExportError as error:
        assert "\n" not in str(error)


YAML_SEED = "path: .\ntrain: images\nval: images\nnames:\n  0: a\n  1: b\n"


@FAST
@given(st.one_of(st.text(max_size=200), st.builds(lambda cut, junk: YAML_SEED[:cut] + junk + YAML_SEED[cut:],
                                                  st.integers(0, len(YAML_SEED)), st.text(max_size=20))))
def test_fuzz_dataset_yaml(tmp_path_factory, text):
    from yolokit.data.dataset import load_data_config

    folder = tmp_path_factory.mktemp("yaml")
    (folder / "images").mkdir()
    (folder / "images" / "a.jpg").write_bytes(b"")
    path = folder / "d.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        data = load_data_config(path)
    except DatasetError as error:
        assert "\n" not in str(error).strip()
        return
    except YolokitError as error:  # pragma: no cover - any other yolokit error must still be one line
        assert "\n" not in str(error).strip()
        return
    assert data.nc == len(data.names) >= 1


@FAST
@given(st.lists(st.one_of(
    st.lists(st.sampled_from(["0", "1", "2", "-1", "0.5", "1e9", "nan", "inf", "-0.1", "1.01", "x", "0.2"]),
             max_size=9).map(" ".join),
    st.text(max_size=40)), max_size=12))  # fmt: skip
def test_fuzz_label_rows(tmp_path_factory, lines):
    from yolokit.data.labels import parse_label_file

    path = tmp_path_factory.mktemp("labels") / "a.txt"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        parsed = parse_label_file(path, nc=2)
    except (OSError, UnicodeDecodeError):
        return  # reported by the scan as an unreadable label file
    assert parsed.cls.dtype == np.int64 and parsed.bboxes.shape == (len(parsed.cls), 4)
    assert ((parsed.cls >= 0) & (parsed.cls < 2)).all()
    assert np.isfinite(parsed.bboxes).all() and (parsed.bboxes >= 0).all() and (parsed.bboxes <= 1).all()
    assert (parsed.bboxes[:, 2:] > 0).all()
    assert parsed.bad_rows + parsed.duplicates + len(parsed.cls) == sum(bool(line.split()) for line in
                                                                        "\n".join(lines).splitlines())


# --- regressions found by the fuzzers (each once a traceback) ---------------------------------------------------------
def test_regression_local_header_name_not_utf8(tmp_path):
    """fuzz 'files': a zip whose local header spells the data.pkl name with a non-UTF-8 byte (the central directory
    says UTF-8) made ``zipfile`` raise UnicodeDecodeError out of the reader."""
    import zipfile

    from hostile_files import reference_checkpoint

    from yolokit.errors import WeightsError
    from yolokit.weights.read import read_weights

    path = reference_checkpoint(tmp_path / "w.pt")
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/data.pkl"))
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30] = 0x80  # first byte of the name in the local header
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="cannot read") as error:
        read_weights(path)
    assert "\n" not in str(error.value)
