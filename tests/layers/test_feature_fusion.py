import keras
import numpy as np
import pytest

from layer_checks import check_layer
from mgnet_tf.layers import FeatureFusion


def _eq3_reference(tokens, wq, wk, wv, wo, gamma, beta, num_heads):
    """Eq. 3 written out in NumPy, per image."""
    out = []
    for h in tokens:
        t, d = h.shape
        dh = d // num_heads
        q, k, v = h @ wq, h @ wk, h @ wv
        heads = []
        for i in range(num_heads):
            sl = slice(i * dh, (i + 1) * dh)
            scores = q[:, sl] @ k[:, sl].T / np.sqrt(dh)
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            heads.append(weights @ v[:, sl])
        e = np.concatenate(heads, axis=1) @ wo
        mu, var = e.mean(axis=1, keepdims=True), e.var(axis=1, keepdims=True)
        normed = (e - mu) / np.sqrt(var + 1e-5) * gamma + beta
        out.append(np.maximum(normed[t - 1], 0.0))
    return np.stack(out)


def test_layer_checks(tmp_path):
    tokens = np.random.rand(2, 3, 8).astype("float32")
    check_layer(lambda: FeatureFusion(), [tokens], (2, 8), 6, tmp_path)


@pytest.mark.parametrize("num_heads, steps", [(1, 1), (1, 4), (2, 3)])
def test_matches_equation_3(num_heads, steps):
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((2, steps, 6)).astype("float32")
    layer = FeatureFusion(num_heads=num_heads)
    layer.build(tokens.shape)
    weights = [rng.standard_normal((6, 6)).astype("float32") * 0.5 for _ in range(4)]
    gamma = rng.standard_normal(6).astype("float32")
    beta = rng.standard_normal(6).astype("float32")
    for variable, value in zip(
        [layer.query_kernel, layer.key_kernel, layer.value_kernel, layer.output_kernel],
        weights,
    ):
        variable.assign(value)
    layer.layer_norm.gamma.assign(gamma)
    layer.layer_norm.beta.assign(beta)
    expected = _eq3_reference(tokens, *weights, gamma, beta, num_heads)
    np.testing.assert_allclose(np.asarray(layer(tokens)), expected, atol=1e-4)


@pytest.mark.parametrize("num_heads", [1, 2])
def test_newest_row_equals_the_taken_tokens_alone(num_heads):
    """`newest=i` (a tensor, the served step's fixed shapes) gives eq. 3 over rows
    0..i, whatever the rows after i hold (NaN included)."""
    rng = np.random.default_rng(1)
    tokens = rng.standard_normal((2, 4, 6)).astype("float32")
    layer = FeatureFusion(num_heads=num_heads)
    layer.build(tokens.shape)
    weights = [rng.standard_normal((6, 6)).astype("float32") * 0.5 for _ in range(4)]
    for variable, value in zip(
        [layer.query_kernel, layer.key_kernel, layer.value_kernel, layer.output_kernel],
        weights,
    ):
        variable.assign(value)
    ones, zeros = np.ones(6, "float32"), np.zeros(6, "float32")
    for newest in range(4):
        padded = tokens.copy()
        padded[:, newest + 1 :] = np.nan
        got = np.asarray(layer(padded, newest=keras.ops.convert_to_tensor(newest, "int32")))
        expected = _eq3_reference(tokens[:, : newest + 1], *weights, ones, zeros, num_heads)
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_newest_token_attends_to_all_earlier_ones():
    tokens = np.random.rand(1, 3, 4).astype("float32")
    layer = FeatureFusion()
    base = np.asarray(layer(tokens))
    changed = tokens.copy()
    changed[0, 0] += 1.0
    assert not np.allclose(np.asarray(layer(changed)), base)


def test_dropout_only_in_training():
    tokens = np.random.rand(2, 4, 8).astype("float32")
    layer = FeatureFusion(dropout=0.5)
    np.testing.assert_array_equal(
        layer(tokens, training=False), layer(tokens, training=False)
    )
    assert not np.allclose(layer(tokens, training=True), layer(tokens, training=False))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_heads"):
        FeatureFusion(num_heads=0)
    with pytest.raises(ValueError, match="dropout"):
        FeatureFusion(dropout=1.5)
    with pytest.raises(ValueError, match="divisible"):
        FeatureFusion(num_heads=2)(np.zeros((1, 2, 131), "float32"))
