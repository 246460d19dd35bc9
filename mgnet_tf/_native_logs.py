"""TensorFlow's start without the GPU-probe noise of machines that have no GPU.

Importing TensorFlow and starting its runtime prints, on a machine without an NVIDIA
driver, lines such as "Could not find cuda drivers on your machine" and "failed call
to cuInit: ... (303)". They come from native code before TensorFlow's logging is set
up, so TF_CPP_MIN_LOG_LEVEL does not hide them. TensorFlow's own Python INFO records
(five "unsupported characters" lines at every SavedModel export, "Sharding callback
duration") are dropped too; its warnings and errors are kept. Native lines in absl's
format ("I0000 ...", "W0000 ...") are also held to TF_CPP_MIN_LOG_LEVEL (train.py and
evaluate.py set 2: errors only), which TensorFlow's own start-up lines such as "oneDNN
custom operations are on" no longer honour. `start_quietly` runs that start with
the process's stderr (file descriptor 2) captured, then writes back every captured
line except those known ones. Where an NVIDIA device node exists, a failed cuInit
means something, and everything is written back. Set MGNET_NATIVE_LOGS=1 to see all.
Standard library only: it runs before Keras is imported.
"""

import contextlib
import glob
import logging
import os
import re
import sys
import tempfile

# The start-up lines of a CPU-only machine, all harmless there.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|Could not find cuda drivers on your machine"
    r"|failed call to cuInit"
    r"|cpu_feature_guard\.cc"
    r"|To enable the following instructions: .* rebuild TensorFlow"
)

_started = False


class TensorFlowInfoFilter(logging.Filter):
    """Drops INFO (and lower) records logged from TensorFlow's own modules."""

    def filter(self, record):
        inside = "/tensorflow/" in record.pathname.replace(os.sep, "/")
        return record.levelno > logging.INFO or not inside


def has_nvidia_device():
    """Whether the machine has an NVIDIA device node (a GPU, driver loaded)."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


# absl's native log line: severity letter, MMDD, time ("I0000 00:00:1.0 123 file.cc:1] ...").
_ABSL_LINE = re.compile(r"([IWEF])\d{4} \d\d:\d\d:\d")
# TF_CPP_MIN_LOG_LEVEL: 0 shows everything, 1 hides INFO, 2 also WARNING, 3 also ERROR.
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def min_log_level():
    """TF_CPP_MIN_LOG_LEVEL as a number (0 when unset or not a number)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def filter_lines(text, min_level=None):
    """`text` without the lines that NOISE matches and the absl-format lines below
    `min_level` (default: TF_CPP_MIN_LOG_LEVEL; fatal lines are always kept), line
    ends kept."""
    min_level = min_log_level() if min_level is None else min_level

    def keep(line):
        if NOISE.search(line):
            return False
        severity = _ABSL_LINE.match(line)
        return not severity or _SEVERITY[severity.group(1)] >= min(min_level, 3)

    return "".join(line for line in text.splitlines(keepends=True) if keep(line))


@contextlib.contextmanager
def filtered_stderr():
    """Captures file descriptor 2 (where native code writes) for the block, then
    writes what it caught back to it, filtered."""
    fd = 2
    sys.stderr.flush()
    try:
        saved = os.dup(fd)
    except OSError:  # no file descriptor 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            text = filter_lines(capture.read().decode("utf-8", errors="replace"))
            if text:
                os.write(fd, text.encode("utf-8"))


def start_quietly():
    """Imports Keras and, on the TensorFlow backend, starts TensorFlow's devices,
    without the no-GPU noise (see the module's docstring). Runs once."""
    global _started
    if _started:
        return
    _started = True
    if os.environ.get("MGNET_NATIVE_LOGS") == "1":
        return _import_keras()
    # TensorFlow logs through absl's logger (as train.py does) and its own.
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).addFilter(TensorFlowInfoFilter())
    with contextlib.nullcontext() if has_nvidia_device() else filtered_stderr():
        _import_keras()


def _import_keras():
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.list_physical_devices()
