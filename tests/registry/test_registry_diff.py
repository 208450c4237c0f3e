"""``diff``: hand-computed tensor, class and architecture cases, INT8 dequantization, and real registered versions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from registry_helpers import files, reg  # noqa: F401 - fixtures

from yolokit.registry.diff import diff_architecture, diff_classes, diff_metrics
from yolokit.registry.weight_diff import compare_tensors, layer_of


def test_compare_tensors_hand_computed():
    a = {"model.0.conv.weight": np.array([3.0, 4.0], np.float32), "model.0.bn.bias": np.zeros(2, np.float32),
         "model.1.conv.weight": np.array([1.0, 0.0], np.float32), "model.2.w": np.ones(3, np.float32),
         "model.3.gone": np.ones(1, np.float32)}
    b = {"model.0.conv.weight": np.array([3.0, 4.0], np.float32), "model.0.bn.bias": np.zeros(2, np.float32),
         "model.1.conv.weight": np.array([1.0, 0.5], np.float32), "model.2.w": np.ones(4, np.float32),
         "model.4.new": np.ones(1, np.float32)}
    report = compare_tensors(a, b)
    assert (report["tensors"], report["changed"], report["unchanged"]) == (3, 1, 2)
    assert report["top"] == [{"name": "model.1.conv.weight", "shape": [2], "rel_l2": 0.5, "max_abs": 0.5}]
    assert report["rel_l2"] == pytest.approx(0.5 / 5.0990195)  # ||d|| / ||a|| over all compared: 0.5 / sqrt(26)
    layers = {e["layer"]: e["status"] for e in report["layers"]}
    assert layers == {"model.0": "frozen", "model.1": "changed", "model.2": "reshaped", "model.3": "only in A",
                      "model.4": "only in B"}
    assert report["frozen_layers"] == ["model.0"] and report["changed_layers"] == ["model.1"]
    assert report["reshaped"] == [{"name": "model.2.w", "layer": "model.2", "a": [3], "b": [4]}]


def test_a_tensor_that_starts_at_zero_has_infinite_relative_change():
    report = compare_tensors({"model.0.b": np.zeros(2, np.float32)}, {"model.0.b": np.array([0, 2], np.float32)})
    assert math.isinf(report["top"][0]["rel_l2"]) and report["top"][0]["max_abs"] == 2.0


def test_layer_names_of_state_dict_and_onnx_keys():
    assert layer_of("model.12.cv1.conv.weight") == layer_of("/model.12/cv1/conv/Conv.weight") == "model.12"
    assert layer_of("head.weight") == "head"


def test_classes_added_removed_renamed():
    out = diff_classes({0: "cat", 1: "dog", 2: "bird"}, {0: "cat", 1: "wolf"})
    assert out == {"a": 3, "b": 2, "added": [], "removed": [[2, "bird"]], "renamed": [[1, "dog", "wolf"]]}
    assert diff_classes({0: "a"}, {0: "a", 1: "b"})["added"] == [[1, "b"]]


def test_architecture_rows_and_keys():
    a = {"nc": 3, "backbone": [[-1, 1, "Conv", [8, 3, 2]]], "head": [[-1, 1, "Detect", ["nc"]]]}
    b = {"nc": 4, "backbone": [[-1, 1, "Conv", [16, 3, 2]]], "head": [[-1, 1, "Detect", ["nc"]], [-1, 1, "X", []]]}
    out = diff_architecture(a, b)
    assert out["rows"] == [[0, [-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 3, 2]]], [2, None, [-1, 1, "X", []]]]
    assert out["keys"] == [{"key": "nc", "a": 3, "b": 4}]


def test_metrics_delta():
    rows = diff_metrics({"map": 0.4, "note": "x"}, {"map": 0.5, "map50": 0.7})
    assert [(r["key"], r["delta"]) for r in rows] == [("map", pytest.approx(0.1)), ("map50", None), ("note", None)]


def test_qdq_and_qlinear_weights_are_dequantized():
    """``(q - zero_point) * scale`` per output channel, hand-computed, for a QDQ Conv and a QLinearConv."""
    from onnx import TensorProto, helper, numpy_helper

    from yolokit.registry.onnx_weights import node_weights, parameter_count, precision_of

    q = np.array([[[[10]]], [[[-4]]]], np.int8)  # (2, 1, 1, 1)
    inits = [numpy_helper.from_array(q, "w_q"), numpy_helper.from_array(np.array([0.5, 0.25], np.float32), "w_s"),
             numpy_helper.from_array(np.array([2, 0], np.int8), "w_zp"),
             numpy_helper.from_array(np.array([1.0, -1.0], np.float32), "bias"),
             numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.uint8), "z")]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], name="dq", axis=0),
             helper.make_node("Conv", ["x", "w", "bias"], ["y"], name="/model.0/conv/Conv"),
             helper.make_node("QLinearConv", ["xq", "s", "z", "w_q", "w_s", "w_zp", "s", "z", "b_q"], ["yq"],
                              name="/model.1/conv/Conv_quant")]
    inits.append(numpy_helper.from_array(np.array([30, -8], np.int32), "b_q"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 1, 1])], inits)
    weights = node_weights(helper.make_model(graph))
    expected = np.array([(10 - 2) * 0.5, (-4 - 0) * 0.25], np.float32).reshape(2, 1, 1, 1)  # [4.0, -1.0]
    np.testing.assert_array_equal(weights["/model.0/conv/Conv.weight"].values, expected)
    np.testing.assert_array_equal(weights["/model.1/conv/Conv.weight"].values, expected)  # '_quant' dropped
    # QLinearConv bias: B * x_scale * w_scale = [30 * 0.1 * 0.5, -8 * 0.1 * 0.25] = [1.5, -0.2]
    np.testing.assert_allclose(weights["/model.1/conv/Conv.bias"].values, [1.5, -0.2], rtol=1e-6)
    assert weights["/model.1/conv/Conv.bias"].stored == "int32"
    assert weights["/model.0/conv/Conv.weight"].stored == "int8"
    assert weights["/model.0/conv/Conv.bias"].stored == "float32"
    assert precision_of(weights) == "int8"
    assert parameter_count(weights) == 6  # w_q counted once though two nodes use it, + 2 float bias + 2 int32 bias


def test_finetune_diff_lists_changed_and_frozen_layers(reg, files):  # noqa: F811
    from yolokit.registry.report import format_diff

    reg.register("demo", files.pretrained)
    reg.register("demo", files.finetuned)
    diff = reg.diff("demo:1", "demo:2")
    w = diff["weights"]
    assert w["mode"] == "change" and w["compared"].startswith("state_dict tensors")
    assert w["frozen_layers"] == ["model.0", "model.1", "model.2", "model.3", "model.4"]  # finetune() moved model.5
    assert w["changed_layers"] == ["model.5"]
    assert all(name.startswith("model.5.") for name in (t["name"] for t in w["top"]))
    # layers 0-4 are Conv+BN: conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var -> 5 x 5 unchanged
    assert w["unchanged"] == 25 and not any(n.startswith("model.5.") for n in w["unchanged_tensors"])
    metadata = {r["field"]: r for r in diff["metadata"]}
    assert not metadata["sha256"]["same"] and metadata["format"]["same"]
    assert (metadata["relation"]["a"], metadata["relation"]["b"]) == (None, "finetuned")
    assert {r["key"]: r["b"] for r in diff["metrics"]} == {"map": 0.42, "map50": 0.61}
    assert diff["classes"]["renamed"] == [] and diff["architecture"]["rows"] == []
    text = format_diff(diff)
    assert "frozen (unchanged) layers: model.0, model.1, model.2, model.3, model.4" in text
    assert "largest movers:" in text


def test_diff_classes_and_head_shapes_between_models(reg, files):  # noqa: F811
    from yolokit.registry.report import format_diff

    reg.register("demo", files.pretrained)
    reg.register("birds", files.renamed)
    diff = reg.diff("demo:1", "birds:1")
    assert diff["classes"]["renamed"] == [[2, "bird", "sparrow"]] and diff["classes"]["added"] == [[3, "fish"]]
    assert {r["name"] for r in diff["weights"]["reshaped"]} >= {"model.5.cv3.0.2.weight", "model.5.cv3.0.2.bias"}
    text = format_diff(diff)
    assert "Classes: 3 -> 4: 1 added, 0 removed, 1 renamed\n  + 3 fish\n  ~ 2 bird -> sparrow" in text
    assert "Architecture: same 6 layer rows; spec keys differ:\n  nc: 3 -> 4" in text


def test_int8_child_diff_is_the_quantization_error(reg, files):  # noqa: F811
    reg.register("demo", files.finetuned)
    reg.register("demo", files.onnx, parent="demo:1")
    reg.register("demo", files.int8, parent="demo:2")
    exported = reg.diff("demo:1", "demo:2")["weights"]  # the export of these weights: the same numbers
    assert exported["changed"] == 0 and exported["tensors"] > 40 and exported["compared"].startswith("ONNX node")
    for a in ("demo:1", "demo:2"):  # against the PyTorch parent (exported in memory) or the fp32 ONNX
        w = reg.diff(a, "demo:3")["weights"]
        assert w["mode"] == "quantization"
        assert w["quantized"] == w["stored"]["int8"] > 10  # every Conv weight
        conv = [t for t in w["top"] if t["name"].endswith("Conv.weight")]
        assert conv and all(0 < t["rel_l2"] < 0.05 for t in conv)  # 8-bit per-channel: well under 5 %
