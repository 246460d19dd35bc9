"""Makes Keras 3's `fit` work under `tf.distribute.MultiWorkerMirroredStrategy`.

With TensorFlow 2.21 / Keras 3.15, `model.fit` fails on two or more workers for any
model ("Attempt to convert a value (PerReplica...) ... to a Tensor";
keras-team/keras#20585, tensorflow/tensorflow#72388), in two places of Keras'
TensorFlow trainer:

1. `_maybe_symbolic_build` takes the first distributed batch and averages it across
   workers with `strategy.reduce`, eagerly, which a multi-worker strategy cannot do.
   The batch only serves to build the loss, metrics and optimizer state, so the local
   replica's batch does the same job.
2. `reduce_per_replica` averages the step's logs with `strategy.reduce("MEAN", v,
   axis=0)`, which fails on scalars (the loss and every metric are scalars). The logs
   are averaged over workers with `axis=None` instead; the metrics are already
   aggregated across workers, so every worker reports the same numbers.

`patch_keras_for_multi_worker()` wraps those two functions, changing nothing for other
strategies. `strategies.build_strategy("multi_worker")` calls it. It relies on Keras
internals: when a Keras release fixes the bug, or moves the functions, it does nothing
(and says so in the log), and `tests/test_distribute.py::test_two_workers_on_localhost`
tells whether fit still runs on two workers.
"""

import logging

import tensorflow as tf

_PATCHED = False


def _is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _local_value(value, strategy):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def patch_keras_for_multi_worker():
    """Wraps the two Keras functions that break multi-worker `fit`. Idempotent.

    Returns:
        True when the wrappers are (or already were) in place, False when this Keras
        has no such functions to wrap.
    """
    global _PATCHED
    if _PATCHED:
        return True
    try:
        from keras.src.backend.tensorflow import trainer as tf_trainer
    except ImportError:
        tf_trainer = None
    trainer_class = getattr(tf_trainer, "TensorFlowTrainer", None)
    build = getattr(trainer_class, "_maybe_symbolic_build", None)
    reduce = getattr(tf_trainer, "reduce_per_replica", None)
    if build is None or reduce is None:
        logging.getLogger(__name__).warning(
            "This Keras has no TensorFlowTrainer._maybe_symbolic_build or "
            "reduce_per_replica; multi-worker fit is left as Keras made it."
        )
        return False

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and _is_multi_worker(strategy):
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda value: _local_value(value, strategy), next(batches)
                )
                break
            iterator = None
        return build(self, iterator=iterator, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and _is_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda value: strategy.reduce("MEAN", value, axis=None), values
            )
        return reduce(values, strategy, reduction)

    trainer_class._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _PATCHED = True
    return True
