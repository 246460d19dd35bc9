"""Feature fusion module (eq. 3): attention over the glimpse tokens seen so far."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mgnet_tf")
class FeatureFusion(keras.layers.Layer):
    """Fuses glimpse tokens h'_1..h'_t into the global feature F_t (eq. 3).

    E_t = softmax((H W^q)(H W^k)^T / sqrt(d)) (H W^v) W^o over the token matrix H,
    F_t = ReLU(LayerNorm(E_t)[t]): the row of the newest glimpse. Attention is not
    causal: the newest token attends to every earlier one. The four projections are
    d x d without bias, as in eq. 3. All rows of E_t are computed, as in the paper's
    reference code, so the multiply-accumulate counts match its tables.

    Args:
        num_heads: int, attention heads; d must be divisible by it. The paper uses 1.
        dropout: float in [0, 1), dropout on the attention weights during training.
        use_bias: bool, zero-initialized biases on the four projections, as
            PyTorch's `nn.MultiheadAttention` (the official code) has; eq. 3 has none.
        kernel_initializer: initializer of the four d x d projections.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call args:
        tokens: (B, t, d) glimpse tokens, oldest first.
        training: bool, enables dropout.
        newest: None, or an int (tensor) i < t: F for the glimpse in row i, attending
            to rows 0..i only (the later rows are ignored): the same value as
            `tokens[:, :i + 1]` without it, in fixed shapes (the served step).

    Returns:
        (B, d) fused feature F_t.

    Example:

    ```python
    fusion = mgnet_tf.layers.FeatureFusion()
    tokens = np.random.rand(2, 3, 131).astype("float32")
    fusion(tokens).shape  # (2, 131)
    ```
    """

    def __init__(
        self,
        num_heads=1,
        dropout=0.0,
        use_bias=False,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(
                f"`num_heads` must be a positive int. Received: num_heads={num_heads!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"`dropout` must be in [0, 1). Received: dropout={dropout!r}"
            )
        self.num_heads = num_heads
        self.dropout = dropout
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.attention_dropout = keras.layers.Dropout(dropout)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=1e-5)

    def build(self, tokens_shape):
        dim = tokens_shape[-1]
        if dim % self.num_heads:
            raise ValueError(
                "The token size must be divisible by `num_heads`. Received: "
                f"token size={dim}, num_heads={self.num_heads}"
            )
        self.head_dim = dim // self.num_heads
        for name in ("query", "key", "value", "output"):
            setattr(
                self,
                f"{name}_kernel",
                self.add_weight(
                    name=f"{name}_kernel",
                    shape=(dim, dim),
                    initializer=self.kernel_initializer,
                ),
            )
            if self.use_bias:
                setattr(
                    self,
                    f"{name}_bias",
                    self.add_weight(
                        name=f"{name}_bias", shape=(dim,), initializer="zeros"
                    ),
                )
        self.layer_norm.build(tokens_shape)

    def _split_heads(self, x):
        batch, steps = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, steps, self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def _project(self, x, name):
        y = ops.matmul(x, getattr(self, f"{name}_kernel"))
        return y + getattr(self, f"{name}_bias") if self.use_bias else y

    def call(self, tokens, training=None, newest=None):
        rows = tokens
        if newest is not None:
            newest = ops.cast(newest, "int32")
            taken = ops.arange(ops.shape(tokens)[1]) <= newest
            # Rows not taken yet are zeroed (whatever they hold, NaN included), and
            # only F's row at `newest` is computed.
            tokens = ops.where(taken[:, None], tokens, ops.zeros_like(tokens))
            # A masked sum, not a gather: the served files stay gather-free where
            # their sampler is (`GlimpseSampler(method="matmul")`).
            row = ops.cast(ops.arange(ops.shape(tokens)[1]) == newest, tokens.dtype)
            rows = ops.sum(tokens * row[:, None], axis=1, keepdims=True)
        query = self._split_heads(self._project(rows, "query"))
        key = self._split_heads(self._project(tokens, "key"))
        value = self._split_heads(self._project(tokens, "value"))
        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))
        # Softmax in float32 under mixed precision, written out because
        # keras.ops.softmax warns on the one-token softmax of the first glimpse.
        scores = ops.cast(scores, "float32") / math.sqrt(self.head_dim)
        if newest is not None:  # nor attended to
            scores = ops.where(taken, scores, float("-inf"))
        scores = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))
        weights = scores / ops.sum(scores, axis=-1, keepdims=True)
        weights = ops.cast(weights, value.dtype)
        weights = self.attention_dropout(weights, training=training)
        attended = ops.transpose(ops.matmul(weights, value), (0, 2, 1, 3))
        attended = ops.reshape(attended, ops.shape(rows))
        fused = self.layer_norm(self._project(attended, "output"))
        return ops.relu(fused[:, -1])

    def compute_output_shape(self, tokens_shape):
        return (tokens_shape[0], tokens_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
