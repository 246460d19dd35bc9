"""Gradients on whichever Keras backend the tests run on (KERAS_BACKEND): the layer
and model tests run on TensorFlow and on JAX with the same assertions."""

import keras
import numpy as np

BACKEND = keras.backend.backend()


def value_and_grads(fn, *inputs, jit=False):
    """`fn(*inputs)` (a scalar) and its gradients with respect to each input, as
    numpy; `jit` compiles the computation with XLA (tf.function(jit_compile=True) or
    jax.jit)."""
    inputs = [np.asarray(x, "float32") for x in inputs]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def compute(*args):
            with tf.GradientTape() as tape:
                tape.watch(args)
                value = fn(*args)
            return value, tape.gradient(value, args)

        if jit:
            compute = tf.function(compute, jit_compile=True)
        value, grads = compute(*[tf.constant(x) for x in inputs])
    elif BACKEND == "jax":
        import jax

        compute = jax.value_and_grad(fn, argnums=tuple(range(len(inputs))))
        if jit:
            compute = jax.jit(compute)
        value, grads = compute(*inputs)
    else:
        raise NotImplementedError(f"No gradient helper for the {BACKEND} backend")
    return np.asarray(value), [np.asarray(g) for g in grads]


def weight_grads(layer, loss_of_output, *inputs, jit=True):
    """The loss `loss_of_output(layer(*inputs))` and its gradients with respect to
    the layer's trainable weights, as numpy, compiled with XLA by default."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def compute(*args):
            with tf.GradientTape() as tape:
                loss = loss_of_output(layer(*args))
            return loss, tape.gradient(loss, layer.trainable_weights)

        if jit:
            compute = tf.function(compute, jit_compile=True)
        loss, grads = compute(*[tf.constant(np.asarray(x, "float32")) for x in inputs])
    elif BACKEND == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss_fn(trainable, *args):
            output, _ = layer.stateless_call(trainable, non_trainable, *args)
            return loss_of_output(output)

        compute = jax.value_and_grad(loss_fn)
        if jit:
            compute = jax.jit(compute)
        loss, grads = compute(trainable, *[np.asarray(x, "float32") for x in inputs])
    else:
        raise NotImplementedError(f"No gradient helper for the {BACKEND} backend")
    return np.asarray(loss), [None if g is None else np.asarray(g) for g in grads]


def jit(fn, xla=True):
    """`fn` compiled on the active backend, its outputs as numpy: with XLA
    (tf.function(jit_compile=True), jax.jit), or with `xla=False` as a TensorFlow
    graph (tf.function; JAX has only jax.jit)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(fn, jit_compile=xla)
    elif BACKEND == "jax":
        import jax

        compiled = jax.jit(fn)
    else:
        raise NotImplementedError(f"No XLA helper for the {BACKEND} backend")
    return lambda *args: np.asarray(compiled(*[np.asarray(a, "float32") for a in args]))
