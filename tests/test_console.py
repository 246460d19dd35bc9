"""Quiet, narrow console output: the epoch summary and the start-up noise filter."""

import io
import logging

from mgnet_tf import _native_logs
from training.callbacks import epoch_summary, summary_lines


def _logs(glimpses):
    logs = {"loss": 1.23456, "val_loss": 1.5, "learning_rate": 0.0123}
    for t in range(1, glimpses + 1):
        logs[f"acc_{t}"] = 0.5 + t / 100
        logs[f"val_acc_{t}"] = 0.4 + t / 100
        logs[f"val_scale_{t}"] = 0.49
        logs[f"val_iou_{t}"] = 0.25
        logs[f"val_center_error_{t}"] = 21.5
    return logs


def test_summary_of_five_glimpses_fits_100_columns_and_keeps_every_figure():
    lines = summary_lines(3, 20, 203.4, _logs(5))
    assert all(len(line) <= 100 for line in lines)
    text = "\n".join(lines)
    assert lines[0].startswith("Epoch 3/20 - 203 s - loss 1.2346")
    assert "learning rate 0.0123" in lines[0]
    assert "train top-1 %, glimpse 1-5: 51.0 52.0 53.0 54.0 55.0" in text
    assert "val top-1 %, glimpse 1-5: 41.0 42.0 43.0 44.0 45.0" in text
    assert "val IoU with item, glimpse 1-5: 0.25 0.25 0.25 0.25 0.25" in text
    assert "val centre error px, glimpse 1-5: 21.5" in text


def test_many_glimpses_wrap_instead_of_running_past_100_columns():
    lines = summary_lines(1, 1, 1.0, _logs(30))
    assert all(len(line) <= 100 for line in lines)
    values = " ".join(lines).split("train top-1 %, glimpse 1-30:")[1].split()[:30]
    assert values == [f"{51 + t:.1f}" for t in range(30)]


def test_summary_without_localization_figures():
    lines = summary_lines(1, 2, 5.0, {"loss": 2.0, "acc_1": 0.1})
    assert lines == ["Epoch 1/2 - 5 s - loss 2.0000", "  train top-1 %, glimpse 1: 10.0"]


def test_epoch_summary_prints_each_epoch_and_no_step_lines_off_a_terminal():
    stream = io.StringIO()
    summary = epoch_summary(2, 10, stream=stream)
    assert type(summary).__name__ == "EpochSummary"  # no batch hook off a terminal
    summary.on_epoch_begin(0)
    summary.on_epoch_end(0, _logs(2))
    out = stream.getvalue()
    assert out.startswith("Epoch 1/2 - ") and "\r" not in out
    assert all(len(line) <= 100 for line in out.splitlines())


def test_progress_line_is_rewritten_in_place_and_cleared_at_epoch_end():
    stream = io.StringIO()
    summary = epoch_summary(2, 10, width=60, progress=True, stream=stream)
    summary.on_epoch_begin(0)
    summary._shown = -10.0  # as if the last line were shown long ago
    summary.on_train_batch_end(4, {"loss": 2.5})
    shown = stream.getvalue()
    assert shown.startswith("\rEpoch 1/2 - step 5/10 - ") and "loss 2.5000" in shown
    assert len(shown) == 61  # "\r" + the line padded to the width
    summary.on_epoch_end(0, {"loss": 2.0})
    rest = stream.getvalue()[len(shown):]
    assert rest.startswith("\r" + " " * 60 + "\rEpoch 1/2 - ")


def test_noise_lines_are_dropped_and_everything_else_kept():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1.0 123 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n"
        "E0000 00:00:1.0 123 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: (303)\n"
        "a real error: file x.keras is truncated\n"
        "I0000 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.\n"
        "last line without newline"
    )
    assert _native_logs.filter_lines(text) == (
        "a real error: file x.keras is truncated\nlast line without newline"
    )


def test_native_lines_are_held_to_the_minimum_log_level():
    info = "I0000 00:00:1.0 15 port.cc:153] oneDNN custom operations are on.\n"
    warning = "W0000 00:00:1.0 15 op.cc:155] a warning\n"
    error = "E0000 00:00:1.0 15 op.cc:9] an error\n"
    fatal = "F0000 00:00:1.0 15 op.cc:9] a fatal error\n"
    plain = "I0000 is not a log line without its time\n"
    text = info + warning + error + fatal + plain
    assert _native_logs.filter_lines(text, min_level=0) == text
    assert _native_logs.filter_lines(text, min_level=1) == warning + error + fatal + plain
    assert _native_logs.filter_lines(text, min_level=2) == error + fatal + plain
    assert _native_logs.filter_lines(text, min_level=3) == fatal + plain


def test_the_minimum_log_level_is_read_from_the_environment(monkeypatch):
    line = "I0000 00:00:1.0 15 port.cc:153] oneDNN custom operations are on.\n"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    assert _native_logs.filter_lines(line) == ""
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert _native_logs.filter_lines(line) == line
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "not a number")
    assert _native_logs.filter_lines(line) == line


def test_filtered_stderr_writes_back_native_writes(capfd):
    import os

    with _native_logs.filtered_stderr():
        os.write(2, b"failed call to cuInit: (303)\nkept line\n")
    assert capfd.readouterr().err == "kept line\n"


def test_tensorflow_info_records_are_dropped_but_its_warnings_kept():
    keep = _native_logs.TensorFlowInfoFilter().filter

    def record(level, path):
        return logging.LogRecord("absl", level, path, 1, "message", None, None)

    assert not keep(record(logging.INFO, "/x/site-packages/tensorflow/python/a.py"))
    assert keep(record(logging.WARNING, "/x/site-packages/tensorflow/python/a.py"))
    assert keep(record(logging.INFO, "/work/train.py"))
