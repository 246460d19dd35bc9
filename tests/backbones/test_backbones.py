"""Tests for mgnet_tf.backbones: architecture facts, shapes, torch parity, I/O."""

import importlib.util
import os

import keras
import numpy as np
import pytest

from mgnet_tf.backbones import available_backbones, get_backbone

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "data")

# torchvision's published parameter counts (ImageNet models, 1000 classes).
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnext50_32x4d": 25_028_904,
    "wide_resnet50_2": 68_883_240,
}


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    # Big models from earlier tests should not pile up in memory.
    yield
    keras.backend.clear_session()


def _count(weights):
    return int(sum(np.prod(weight.shape) for weight in weights))


def _randomize_batch_norms(model, seed=0):
    # Fresh BN layers are the identity in inference mode; random statistics
    # make the parity and round-trip checks exercise them.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, channels).astype("float32"),
                    rng.normal(0.0, 0.1, channels).astype("float32"),
                    rng.normal(0.0, 0.1, channels).astype("float32"),
                    rng.uniform(0.5, 1.5, channels).astype("float32"),
                ]
            )


def test_available_backbones():
    assert available_backbones() == sorted(["vanilla_cnn", *TORCHVISION_PARAMS.keys()])


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_resnet_parameter_count_matches_torchvision(name):
    backbone = get_backbone(name, (224, 224, 3))
    classifier = keras.layers.Dense(1000)
    classifier(backbone.output)
    # torchvision's count holds weights only; BN running stats are buffers.
    total = _count(backbone.trainable_weights) + _count(classifier.trainable_weights)
    assert backbone.name == name
    assert total == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize(
    "name, input_shape, small_input, dim",
    [
        ("resnet18", (32, 32, 3), False, 512),
        ("resnet18", (32, 32, 3), True, 512),
        ("resnet18", (32, 32, 1), False, 512),
        ("vanilla_cnn", (28, 28, 1), False, 128),
        ("keras_app:MobileNetV3Small", (32, 32, 3), False, 576),
        ("keras_app:MobileNetV3Small", (32, 32, 1), False, 576),
    ],
)
def test_output_shape(name, input_shape, small_input, dim):
    backbone = get_backbone(name, input_shape, small_input=small_input)
    images = np.random.default_rng(0).normal(size=(2, *input_shape))
    # predict runs in graph mode, where TF validates every layer's name scope.
    features = backbone.predict(images.astype("float32"), verbose=0)
    assert features.shape == (2, dim)
    assert backbone.name == name.replace(":", "_")


def test_grouped_convolution_runs():
    # Keras runs grouped convs on the TF CPU backend through XLA.
    backbone = get_backbone("resnext50_32x4d", (32, 32, 3))
    features = backbone(np.zeros((1, 32, 32, 3), "float32"), training=False)
    assert features.shape == (1, 2048)


def test_vanilla_cnn_matches_paper_macs():
    backbone = get_backbone("vanilla_cnn", (112, 112, 1))
    macs = []
    for index in range(1, 5):
        conv = backbone.get_layer(f"conv{index}")
        _, height, width, _ = conv.output.shape
        macs.append(height * width * int(np.prod(conv.kernel.shape)))
    assert macs == [4_665_600, 37_324_800, 13_436_928, 12_460_032]
    # Kernels plus biases: 416 + 12,832 + 18,496 + 73,856.
    assert backbone.count_params() == 105_600


def test_small_input_only_removes_the_stem_max_pool():
    default = get_backbone("resnet18", (64, 64, 3))
    small = get_backbone("resnet18", (64, 64, 3), small_input=True)
    assert default.get_layer("avgpool").input.shape == (None, 2, 2, 512)
    assert small.get_layer("avgpool").input.shape == (None, 4, 4, 512)
    assert {layer.name for layer in default.layers} - {
        layer.name for layer in small.layers
    } == {"maxpool_pad", "maxpool"}
    assert default.count_params() == small.count_params()


def _torch_reference():
    """tests/data/torch_reference.py, which made the golden file; its weight
    generator needs only NumPy."""
    path = os.path.join(DATA, "torch_reference.py")
    spec = importlib.util.spec_from_file_location("torch_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keras_layer_name(torch_name):
    # "layer2.0.downsample.0" -> "layer2_0_downsample_conv"
    name = torch_name.replace("downsample.0", "downsample_conv")
    return name.replace("downsample.1", "downsample_bn").replace(".", "_")


def test_resnet18_matches_pytorch():
    # The output of a PyTorch ResNet-18 (torchvision's layout) with weights and
    # images drawn by NumPy from the stored seeds, computed once by
    # tests/data/torch_reference.py; the same weights go into our backbone here.
    reference = _torch_reference()
    with np.load(os.path.join(DATA, "resnet18_pytorch.npz")) as stored:
        weight_seed, image_seed = int(stored["weight_seed"]), int(stored["image_seed"])
        checksum, expected = stored["checksum"], stored["output"]
    parameters = reference.resnet18_parameters(weight_seed)
    images = reference.resnet18_images(image_seed)
    np.testing.assert_allclose(
        reference.resnet18_checksum(parameters, images),
        checksum,
        rtol=1e-6,
        err_msg="NumPy draws other weights or images from the stored seeds than "
        "those the golden output was made with: rerun tests/data/torch_reference.py",
    )

    backbone = get_backbone("resnet18", images.shape[1:])
    for torch_name, arrays in parameters:
        layer = backbone.get_layer(_keras_layer_name(torch_name))
        if isinstance(layer, keras.layers.Conv2D):
            # Keras kernels are HWIO, PyTorch weights OIHW.
            layer.set_weights([np.transpose(arrays[0], (2, 3, 1, 0))])
        else:
            layer.set_weights(arrays)  # gamma, beta, moving mean, moving variance
    # 20 convs (17 + 3 downsample) and as many BNs: every layer was mapped.
    mapped = {_keras_layer_name(torch_name) for torch_name, _ in parameters}
    assert len(mapped) == 40
    assert mapped == {layer.name for layer in backbone.layers if layer.weights}

    actual = np.asarray(backbone(images, training=False))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "name, small_input, received",
    [
        ("resnet19", False, "'resnet19'"),
        ("keras_app:NoSuchNet", False, "'NoSuchNet'"),
        (None, False, "None"),
        ("vanilla_cnn", True, "'vanilla_cnn'"),
        ("keras_app:MobileNetV3Small", True, "'keras_app:MobileNetV3Small'"),
        ("resnet18", 1, "small_input=1"),
    ],
)
def test_invalid_arguments_raise(name, small_input, received):
    with pytest.raises(ValueError, match="Received") as error:
        get_backbone(name, (32, 32, 3), small_input=small_input)
    assert received in str(error.value)


@pytest.mark.parametrize("input_shape", [(32, 32), (32, 32, 0), [32, "32", 3]])
def test_invalid_input_shape_raises(input_shape):
    with pytest.raises(ValueError, match="Received") as error:
        get_backbone("resnet18", input_shape)
    assert repr(input_shape) in str(error.value)


def test_save_load_round_trip(tmp_path):
    backbone = get_backbone("resnet18", (32, 32, 3))
    _randomize_batch_norms(backbone)
    path = tmp_path / "resnet18.keras"
    backbone.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    images = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(
        np.asarray(restored(images, training=False)),
        np.asarray(backbone(images, training=False)),
    )
    assert restored.name == "resnet18"
