"""A tiny ONNX graph with BiRefNet's contract: ImageNet-normalised RGB [1, 3, S, S] in, logits [1, 1, S, S] out.

Only the contract: it cannot tell whether the published BiRefNet graph loads in onnxruntime (that is
why the ONNX segmenter is an opt-in, documented as not exercised by these tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_birefnet_onnx(out: Path, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(0, 0.5, (1, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(1, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input_image", "w", "b"], ["output_image"], pads=[1, 1, 1, 1])],
        "tiny_birefnet",
        [helper.make_tensor_value_info("input_image", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("output_image", TensorProto.FLOAT, [1, 1, "height", "width"])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    onnx.save(model, out / "onnx" / "model.onnx")
    return out
