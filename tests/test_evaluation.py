import numpy as np
import pytest
import tensorflow as tf

from mgnet_tf import MGNet, evaluation
from mgnet_tf.visualize import glimpse_picture


def _model(num_glimpses=3):
    return MGNet(
        "vanilla_cnn",
        num_classes=4,
        image_size=32,
        num_glimpses=num_glimpses,
        downsample=2,
        channels=1,
    )


def _data(count=10, batch=4):
    rng = np.random.default_rng(0)
    images = rng.random((count, 32, 32, 1)).astype("float32")
    labels = rng.integers(0, 4, count).astype("int32")
    return (
        images,
        labels,
        tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch),
    )


def test_predict_matches_the_model_and_keeps_order():
    model = _model()
    images, labels, dataset = _data()
    outputs = evaluation.predict(model, dataset, progress=False)
    assert outputs["probabilities"].shape == (10, 3, 4)
    np.testing.assert_array_equal(outputs["labels"], labels)
    direct = tf.nn.softmax(model(images)["logits"]).numpy()
    np.testing.assert_allclose(outputs["probabilities"], direct, atol=1e-5)
    assert outputs["glimpse_params"].shape == (10, 3, 3)


def test_accuracy_per_glimpse_by_hand():
    probabilities = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.3, 0.7], [0.4, 0.6]]])
    # image 0 (label 0): right, wrong; image 1 (label 1): right, right
    assert evaluation.accuracy_per_glimpse(probabilities, [0, 1]) == [1.0, 0.5]


def test_accuracy_per_class_by_hand():
    # 4 images, 2 glimpses, 3 classes; labels 0, 0, 1, 1 (class 2 has no image).
    probabilities = np.array(
        [
            [[0.8, 0.1, 0.1], [0.7, 0.2, 0.1]],  # class 0: right, right
            [[0.1, 0.8, 0.1], [0.6, 0.3, 0.1]],  # class 0: wrong, right
            [[0.1, 0.1, 0.8], [0.1, 0.8, 0.1]],  # class 1: wrong, right
            [[0.1, 0.8, 0.1], [0.1, 0.2, 0.7]],  # class 1: right, wrong
        ]
    )
    per_class = evaluation.accuracy_per_class(probabilities, [0, 0, 1, 1])
    assert per_class == {"count": [2, 2, 0], "accuracy": [[0.5, 1.0], [0.5, 0.5], None]}


def test_dynamic_exit_sweep_ends_match_fixed_exits():
    model = _model()
    _, labels, dataset = _data()
    outputs = evaluation.predict(model, dataset, progress=False)
    mflops = [1.0, 2.0, 3.0]
    sweep = evaluation.dynamic_exit_sweep(
        outputs["probabilities"], labels, [0.0, 1.0], mflops
    )
    fixed = evaluation.accuracy_per_glimpse(outputs["probabilities"], labels)
    assert sweep[0]["mean_glimpses"] == 1 and sweep[0]["mean_mflops"] == 1.0
    assert sweep[0]["accuracy"] == pytest.approx(fixed[0])
    assert sweep[1]["mean_glimpses"] == 3 and sweep[1]["mean_mflops"] == 3.0
    assert sweep[1]["accuracy"] == pytest.approx(fixed[-1])


def test_latency_has_one_positive_median_per_glimpse_count():
    latency = evaluation.latency_ms(_model(), repeats=3, warmup=1)
    assert len(latency) == 3 and all(ms > 0 for ms in latency)


def test_relative_corruption_error_by_hand():
    model = {"fog": [0.8, 0.6], "snow": [0.5, 0.5]}
    baseline = {"fog": [0.6, 0.4], "snow": [0.5, 0.5]}
    errors, mean = evaluation.relative_corruption_error(model, baseline)
    assert errors["fog"] == pytest.approx(0.6 / 1.0)
    assert errors["snow"] == pytest.approx(1.0)
    assert mean == pytest.approx(0.8)


def test_empty_data_set_is_an_error():
    empty = tf.data.Dataset.from_tensor_slices(
        (np.zeros((0, 32, 32, 1), "float32"), np.zeros(0, "int32"))
    ).batch(2)
    with pytest.raises(ValueError, match="empty"):
        evaluation.predict(_model(), empty, progress=False)


def test_glimpse_picture_layout():
    image = np.zeros((16, 20, 1), "float32")
    params = np.array([[1.0, 0.0, 0.0], [0.5, 0.2, -0.2]], "float32")
    glimpses = np.ones((2, 8, 10, 1), "float32")
    picture = glimpse_picture(image, params, glimpses, correct=np.array([True, False]))
    assert picture.shape == (2 * 16 + 2, 2 * 20 + 1, 3) and picture.dtype == np.uint8
    # Bottom row: the (white) glimpses enlarged; top row: black image with coloured boxes.
    assert picture[18:, :20].min() == 255
    top_first, top_second = picture[:16, :20], picture[:16, 21:]
    assert (
        top_first[..., 1].max() > 150 and top_first[..., 0].max() < 50
    )  # green: right
    assert (
        top_second[..., 0].max() > 150 and top_second[..., 1].max() < 50
    )  # red: wrong
