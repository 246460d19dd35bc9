"""Runs a piece of mgnet_tf on the TensorFlow backend from a process on another one:
the SavedModel export and the FLOP count read TensorFlow graphs, while training may
run on JAX."""

import os
import subprocess
import sys


def run_on_tensorflow(args, what):
    """Runs `python *args` with KERAS_BACKEND=tensorflow and this checkout importable;
    returns its stdout.

    Raises:
        RuntimeError: naming `what` and holding the end of the child's stderr, when
            the child fails.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment = dict(os.environ, KERAS_BACKEND="tensorflow")
    # The child imports this checkout's mgnet_tf and pipelines, installed or not.
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, environment.get("PYTHONPATH")) if p
    )
    result = subprocess.run(
        [sys.executable, *args], env=environment, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} runs on the TensorFlow backend; its TensorFlow process failed "
            f"(exit status {result.returncode}):\n{result.stderr[-3000:]}"
        )
    return result.stdout
