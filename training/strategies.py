"""The tf.distribute strategy that train.py's --strategy flag names.

auto: a TPU if one is reachable, else every GPU (MirroredStrategy) if there are several,
else the default (one device). `mirrored` on a machine without GPUs splits the CPU into
`num_cpu_replicas` logical devices, so the multi-replica path runs anywhere. Call
`build_strategy` before TensorFlow runs any op: logical devices and TPU systems can only
be set up on a fresh runtime.
"""

import os

import tensorflow as tf

from training import multi_worker

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


def _tpu_strategy(tpu):
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu="local" if tpu == "local" else (tpu or "")
    )
    if tpu != "local":
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _on_tpu_vm():
    """Whether this host has TPU chips attached (a TPU VM): the TPU device files, or
    the accelerator type its runtime sets. The retired TPU-node runtime set
    COLAB_TPU_ADDR instead."""
    return bool(os.environ.get("TPU_ACCELERATOR_TYPE")) or os.path.exists("/dev/accel0")


def _split_cpu(num_replicas):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_replicas
    )
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def build_strategy(name, tpu=None, num_cpu_replicas=2):
    """Builds the strategy `name` (one of `STRATEGIES`).

    Args:
        name: "auto", "default", "mirrored", "multi_worker" or "tpu".
        tpu: TPU address or name for "tpu"/"auto" ("local" on a TPU VM); None lets the
            resolver find one (Colab sets COLAB_TPU_ADDR, Cloud sets TPU_NAME).
        num_cpu_replicas: logical CPU devices for "mirrored" without GPUs.

    Returns:
        A `tf.distribute.Strategy`.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy. Received: strategy={name!r}; expected one of {STRATEGIES}"
        )
    if name == "tpu":
        return _tpu_strategy(tpu)
    if name == "auto":
        if tpu is None and _on_tpu_vm():
            tpu = "local"  # a TPU VM (today's Colab and Cloud TPUs): the chips are local
        if tpu or os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME"):
            try:
                return _tpu_strategy(tpu)
            except (ValueError, tf.errors.OpError):
                pass  # no TPU after all: fall through to GPUs or the CPU
        if len(tf.config.list_physical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        if num_cpu_replicas < 1:
            raise ValueError(
                f"`num_cpu_replicas` must be >= 1. Received: num_cpu_replicas={num_cpu_replicas}"
            )
        return tf.distribute.MirroredStrategy(devices=_split_cpu(num_cpu_replicas))
    if name == "multi_worker":
        # Keras 3.15's fit needs two fixes to run on several workers (see the module).
        multi_worker.patch_keras_for_multi_worker()
        # Reads the cluster from TF_CONFIG; one worker is the chief.
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this process writes checkpoints and logs (worker 0, or single host)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in (None, "chief") or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def num_workers(strategy):
    """Hosts (worker and chief tasks) that each run an input pipeline; 1 on one host."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return max(1, sum(len(spec.get(job, [])) for job in ("chief", "worker")))


def output_dir(model_dir, strategy):
    """Where this process writes: model_dir for the chief, a scratch directory below
    it for every other worker (Keras has all workers save; only the chief's files are
    the run's)."""
    if is_chief(strategy):
        return model_dir
    resolver = strategy.cluster_resolver
    return os.path.join(
        model_dir, "workers", f"{resolver.task_type}-{resolver.task_id}"
    )


def jax_distribution(name):
    """--strategy on the JAX backend: Keras' `DataParallel` over every device JAX sees
    (TPU cores, GPUs, or CPU devices made with
    XLA_FLAGS=--xla_force_host_platform_device_count=N), set as the global
    distribution; "multi_worker" first joins the hosts (`keras.distribution.initialize`,
    from JAX's coordinator environment). "default" stays on one device.

    Returns:
        The number of devices each batch is split over (1: no distribution set).
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy. Received: strategy={name!r}; expected one of {STRATEGIES}"
        )
    import jax  # noqa: PLC0415 (the JAX backend only)
    import keras  # noqa: PLC0415

    if name == "default":
        return 1
    if name == "multi_worker":
        keras.distribution.initialize()
    devices = jax.devices()
    if len(devices) == 1 and name == "auto":
        return 1
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return len(devices)
