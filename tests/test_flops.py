import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras
from mgnet_tf import MGNet, flops
from mgnet_tf.layers import BatchNormalization, GlimpseSampler

# The paper's figures (Tables 1-4), in MFLOPs (1 multiply-accumulate = 1 FLOP).
# Each case: MGNet arguments, expected cost with 1..T glimpses.
PAPER_CASES = {
    "t-mnist ff-net (table 4)": (
        dict(backbone="vanilla_cnn", num_classes=10, image_size=112, channels=1),
        [67.950],
    ),
    "t-mnist mgnet M=4 (table 4)": (
        dict(
            backbone="vanilla_cnn",
            num_classes=10,
            image_size=112,
            channels=1,
            num_glimpses=5,
            downsample=4,
        ),
        [3.471, 7.011, 10.619, 14.296, 18.042],
    ),
    "imagenet100 resnet18 ff-net (table 1)": (
        dict(backbone="resnet18", num_classes=100, image_size=224),
        [1815.0],
    ),
    "imagenet100 resnet18 mgnet (tables 1, 2)": (
        dict(
            backbone="resnet18",
            num_classes=100,
            image_size=224,
            num_glimpses=4,
            downsample=7 / 3,
        ),
        [334.2, 669.5, 1005.8, 1343.0],
    ),
    "tiny imagenet resnet18 (table 3)": (
        dict(backbone="resnet18", num_classes=200, image_size=64),
        [149.7],
    ),
    "tiny imagenet resnet18-small ff-net (table 3)": (
        dict(backbone="resnet18", num_classes=200, image_size=64, small_input=True),
        [565.7],
    ),
    "tiny imagenet resnet18-small mgnet (table 3)": (
        dict(
            backbone="resnet18",
            num_classes=200,
            image_size=64,
            small_input=True,
            num_glimpses=3,
            downsample=2,
        ),
        [None, None, 430.1],
    ),
    "resnet50 (tables 1, 2)": (
        dict(
            backbone="resnet50",
            num_classes=100,
            image_size=224,
            num_glimpses=4,
            downsample=7 / 3,
        ),
        [767.7, 1552.3, None, 3172.0],
    ),
    "resnext50 (tables 1, 2)": (
        dict(
            backbone="resnext50_32x4d",
            num_classes=100,
            image_size=224,
            num_glimpses=4,
            downsample=7 / 3,
        ),
        [793.7, 1604.2, None, 3276.0],
    ),
    "wrn50 (tables 1, 2)": (
        dict(
            backbone="wide_resnet50_2",
            num_classes=100,
            image_size=224,
            num_glimpses=4,
            downsample=7 / 3,
        ),
        [2110.1, 4237.2, None, 8542.0],
    ),
    "resnet50 ff-net (table 1)": (
        dict(backbone="resnet50", num_classes=100, image_size=224),
        [4104.0],
    ),
    "resnext50 ff-net (table 1)": (
        dict(backbone="resnext50_32x4d", num_classes=100, image_size=224),
        [4246.0],
    ),
    "wrn50 ff-net (table 1)": (
        dict(backbone="wide_resnet50_2", num_classes=100, image_size=224),
        [11413.0],
    ),
    "resnet34 (table 3)": (
        dict(backbone="resnet34", num_classes=200, image_size=64),
        [300.9],
    ),
    "resnet34-small ff-net (table 3)": (
        dict(backbone="resnet34", num_classes=200, image_size=64, small_input=True),
        [1170.5],
    ),
    "resnet34-small mgnet (table 3)": (
        dict(
            backbone="resnet34",
            num_classes=200,
            image_size=64,
            small_input=True,
            num_glimpses=3,
            downsample=2,
        ),
        [None, None, 883.7],
    ),
}


def _check_within_2_percent(kwargs, expected):
    kwargs = {"num_glimpses": 1, "downsample": 1, **kwargs}
    measured = [m / 1e6 for m in flops.mgnet_macs(MGNet(**kwargs))]
    assert len(measured) == len(expected)
    for got, want in zip(measured, expected):
        if want is not None:
            assert abs(got - want) / want < 0.02, (measured, expected)


@pytest.mark.parametrize("case", sorted(PAPER_CASES))
def test_reproduces_the_paper(case):
    _check_within_2_percent(*PAPER_CASES[case])


def test_conv_and_dense_counts_are_exact():
    inputs = keras.Input((10, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="valid")(inputs)  # 8 x 10 x 8 outputs
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5)(x)
    model = keras.Model(inputs, outputs)
    expected = 8 * 10 * 8 * (3 * 3 * 3) + (8 * 10 * 8) * 5
    assert flops.count_macs(model, tf.TensorSpec((1, 10, 12, 3))) == expected
    # Batch 2 costs twice as much.
    assert flops.count_macs(model, tf.TensorSpec((2, 10, 12, 3))) == 2 * expected


@pytest.mark.parametrize(
    "batch_norm", [keras.layers.BatchNormalization, BatchNormalization]
)
def test_batch_norm_is_one_multiply_per_output_fused_or_not(batch_norm):
    inputs = keras.Input((10, 12, 3))
    x = keras.layers.Conv2D(8, 3, use_bias=False)(inputs)  # 8 x 10 x 8 outputs
    model = keras.Model(inputs, batch_norm()(x))
    conv = 8 * 10 * 8 * (3 * 3 * 3)
    count = flops.count_macs(model, tf.TensorSpec((1, 10, 12, 3)))
    # Keras' unfused form also multiplies the 8 statistics twice (scale, offset).
    assert conv + 8 * 10 * 8 <= count <= conv + 8 * 10 * 8 + 2 * 8


def test_vanilla_cnn_is_the_hand_computed_count():
    from mgnet_tf.backbones import get_backbone

    backbone = get_backbone("vanilla_cnn", (112, 112, 1))
    hand = (
        108 * 108 * 16 * 25
        + 54 * 54 * 32 * 25 * 16
        + 27 * 27 * 64 * 9 * 32
        + 13 * 13 * 128 * 9 * 64
    )
    # Only convolutions multiply here; max-pooling, ReLU and averaging count zero.
    assert flops.count_macs(backbone, tf.TensorSpec((1, 112, 112, 1))) == hand


def test_sampler_costs_what_bilinear_interpolation_costs():
    sampler = GlimpseSampler(96)
    params = tf.constant([[0.4, 0.1, -0.2]])
    macs = flops.count_macs(
        lambda x: sampler(x, params), tf.TensorSpec((1, 224, 224, 3))
    )
    # Four weighted corners per output value and channel, plus the four corner
    # weights per output position; small per-axis terms for the coordinates.
    bilinear = 4 * 96 * 96 * 3 + 4 * 96 * 96
    assert bilinear <= macs < bilinear * 1.05


def test_glimpse_classifier_is_not_counted():
    kwargs = dict(
        backbone="vanilla_cnn",
        num_classes=10,
        image_size=28,
        channels=1,
        num_glimpses=2,
        downsample=1,
    )
    few = flops.mgnet_macs(MGNet(**kwargs))
    many = flops.mgnet_macs(MGNet(**{**kwargs, "num_classes": 1000}))
    # Only the global classifier grows with the classes: 1 pass per glimpse.
    token = 128 + 3
    assert [b - a for a, b in zip(few, many)] == [990 * token, 2 * 990 * token]


def test_cli_prints_json_last():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mgnet_tf.flops",
            "--backbone=vanilla_cnn",
            "--image_size=56",
            "--num_classes=10",
            "--glimpses=2",
            "--downsample=7/3",
            "--channels=1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["mflops"]) == 2 and report["mflops"][0] < report["mflops"][1]
    model = MGNet(
        "vanilla_cnn",
        num_classes=10,
        image_size=56,
        num_glimpses=2,
        downsample=7 / 3,
        channels=1,
    )
    assert report["params"] == flops.inference_params(model)
    np.testing.assert_allclose(
        report["mflops"], [m / 1e6 for m in flops.mgnet_macs(model)], atol=1e-4
    )


def test_cli_rejects_a_bad_downsample():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mgnet_tf.flops",
            "--backbone=vanilla_cnn",
            "--image_size=56",
            "--num_classes=10",
            "--downsample=seven",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "downsample" in result.stderr
