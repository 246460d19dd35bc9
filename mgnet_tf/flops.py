"""Inference cost of MGNet, counted on the traced TensorFlow graph.

Usage:
    python -m mgnet_tf.flops --backbone=resnet18 --image_size=224 --num_classes=100 \
        --num_glimpses=4 --downsample=7/3
    # last stdout line: {"mflops": [m_1, ..., m_T], "params": P}

Convention (the paper's): one multiply-accumulate (MAC) counts as one FLOP.
Convolutions and matrix products count their MACs; every other elementwise multiply or
divide (the sampler's bilinear blends, batch norm, layer norm) counts one per output
value; additions, comparisons, gathers, pooling and activations count zero. Only ops
that the requested outputs depend on are counted, so the glimpse classifier, which is
used only by the training loss, is left out, as the paper drops it at inference.
"""

import argparse
import fractions
import json
import math
import os
import tempfile

import keras
import tensorflow as tf

from mgnet_tf._tensorflow_child import run_on_tensorflow

_ELEMENTWISE_MULTIPLY = {"Mul", "RealDiv", "Div", "DivNoNan", "MulNoNan"}
_FUSED_BATCH_NORM = {"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"}
_CALLS = {"PartitionedCall", "StatefulPartitionedCall"}


def _numel(tensor):
    shape = tensor.shape
    if not shape.is_fully_defined():
        raise ValueError(
            f"Cannot count FLOPs of op producing {tensor.name} with unknown shape "
            f"{shape}; trace with a fully defined input shape (batch included)."
        )
    return math.prod(shape.as_list())


def _op_macs(op):
    """Multiply-accumulates of one graph op (nested function calls excluded)."""
    if op.type == "Conv2D":
        kernel_h, kernel_w, kernel_in, _ = op.inputs[1].shape.as_list()
        return _numel(op.outputs[0]) * kernel_h * kernel_w * kernel_in
    if op.type == "DepthwiseConv2dNative":
        kernel_h, kernel_w = op.inputs[1].shape.as_list()[:2]
        return _numel(op.outputs[0]) * kernel_h * kernel_w
    if op.type == "MatMul":
        depth = op.inputs[0].shape[0 if op.get_attr("transpose_a") else 1]
        return _numel(op.outputs[0]) * depth
    if op.type in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        depth = op.inputs[0].shape[-2 if op.get_attr("adj_x") else -1]
        return _numel(op.outputs[0]) * depth
    if op.type == "Einsum":
        raise NotImplementedError(
            f"FLOP counting of Einsum ({op.name}) is not implemented; express the "
            "product as a matmul."
        )
    if op.type in _ELEMENTWISE_MULTIPLY or op.type in _FUSED_BATCH_NORM:
        # A fused batch norm is one multiply-add per output value, as unfused.
        return _numel(op.outputs[0])
    return 0


def _graph_macs(graph, outputs):
    """Sums MACs over the ops of `graph` that `outputs` depend on."""
    pending = [tensor.op for tensor in outputs]
    seen = set()
    total = 0
    while pending:
        op = pending.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type in _CALLS:
            nested = graph._get_function(op.get_attr("f").name).graph
            total += _graph_macs(nested, nested.outputs)
        else:
            total += _op_macs(op)
        pending.extend(tensor.op for tensor in op.inputs)
        pending.extend(op.control_inputs)
    return total


def count_macs(function, input_spec):
    """MACs of `function` traced on `input_spec` (a fully defined `tf.TensorSpec`).

    Args:
        function: a callable of one tensor returning a tensor or a nest of tensors.
        input_spec: `tf.TensorSpec` with a fully defined shape.

    Returns:
        int, multiply-accumulates of one call.
    """
    concrete = tf.function(function).get_concrete_function(input_spec)
    outputs = [t for t in tf.nest.flatten(concrete.structured_outputs)]
    return _graph_macs(concrete.graph, outputs)


def mgnet_macs(model):
    """Inference MACs of `model` (an `MGNet`) for one image, with 1..T glimpses.

    Returns:
        list of T ints; entry t - 1 is the cost of classifying with t glimpses.

    The count reads TensorFlow's traced graph; on another Keras backend the same
    architecture (`model.get_config()`; the weights do not change the count) is
    counted in a child process on the TensorFlow backend.
    """
    if keras.backend.backend() != "tensorflow":
        return _mgnet_macs_on_tensorflow(model)
    spec = tf.TensorSpec((1, model.image_size, model.image_size, model.channels))
    return [
        count_macs(lambda x, t=steps: model(x, num_glimpses=t)["logits"], spec)
        for steps in range(1, model.num_glimpses + 1)
    ]


_CHILD = """
import json, sys
from mgnet_tf import MGNet, flops
with open(sys.argv[1]) as f:
    model = MGNet.from_config(json.load(f))
print(json.dumps(flops.mgnet_macs(model)))
"""


def _mgnet_macs_on_tensorflow(model):
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "config.json")
        with open(path, "w") as f:
            json.dump(model.get_config(), f)
        output = run_on_tensorflow(["-c", _CHILD, path], "Counting MACs")
    return json.loads(output.strip().splitlines()[-1])


def inference_params(model):
    """Trainable parameters used at inference (all but the glimpse classifier)."""
    dropped = model.glimpse_classifier.count_params()
    return sum(math.prod(w.shape) for w in model.trainable_weights) - dropped


def parse_downsample(text):
    """Parses a downsampling factor written as a number or a fraction ("7/3")."""
    try:
        value = float(fractions.Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            f"--downsample must be a number or a fraction like 7/3. Received: {text!r}"
        ) from None
    return value


def main(argv=None):
    from mgnet_tf.mgnet import (
        MGNet,
    )  # noqa: PLC0415 (keeps `import mgnet_tf.flops` light)

    parser = argparse.ArgumentParser(
        prog="python -m mgnet_tf.flops", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--image_size", type=int, required=True)
    parser.add_argument("--num_classes", type=int, required=True)
    parser.add_argument("--num_glimpses", "--glimpses", type=int, default=1)
    parser.add_argument("--downsample", type=parse_downsample, default=1.0)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--small_input", action="store_true")
    args = parser.parse_args(argv)
    model = MGNet.from_settings(vars(args))
    mflops = [round(macs / 1e6, 4) for macs in mgnet_macs(model)]
    print(json.dumps({"mflops": mflops, "params": inference_params(model)}))


if __name__ == "__main__":
    main()
