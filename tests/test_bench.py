"""The benchmark scripts run with tiny sizes and print valid JSON (no timing is asserted)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--backbone=vanilla_cnn",
    "--image_size=32",
    "--glimpses=2",
    "--downsample=2",
    "--channels=1",
    "--num_classes=10",
    "--json",
]


def _last_json(script, *args):
    result = subprocess.run(
        [sys.executable, os.path.join("bench", script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_latency_script():
    report = _last_json(
        "latency.py",
        *TINY,
        "--batch_sizes=1,2",
        "--repeats=2",
        "--warmup=1",
        "--forms=eager,function,xla,litert,litert_matmul",
    )
    assert report["ratio"] == report["mgnet_ms"] / report["ff_ms"]
    # LiteRT files take batch 1: no batch-2 LiteRT figure.
    assert set(report["latency_ms"]) == {
        f"batch{b}_{f}" for b in (1, 2) for f in ("eager", "function", "xla")
    } | {"batch1_litert", "batch1_litert_matmul"}
    litert = report["latency_ms"]["batch1_litert"]
    assert litert["mac_bound_ideal_ms"] == pytest.approx(
        litert["ff_ms"] * report["macs"]["mgnet"] / report["macs"]["ff"]
    )
    assert 0 < report["macs"]["mgnet"] < report["macs"]["ff"]
    entry = report["latency_ms"]["batch1_function"]
    assert len(entry["mgnet_ms_per_glimpse_count"]) == 2
    assert entry["mgnet_ms_per_glimpse_count"][-1] == entry["mgnet_ms"]
    assert report["glimpse_size"] == 16


def test_train_throughput_script():
    report = _last_json(
        "train_throughput.py",
        *TINY,
        "--batch_size=4",
        "--steps=2",
        "--warmup=1",
        "--rounds=1",
    )
    for which in ("ff", "mgnet"):
        assert report[which]["images_per_s"] > 0 and report[which]["peak_rss_mib"] > 100
    assert report["throughput_ratio"] == (
        report["mgnet"]["images_per_s"] / report["ff"]["images_per_s"]
    )


def test_op_profile_script():
    report = _last_json("op_profile.py", *TINY, "--calls=2")
    for which in ("ff", "mgnet"):
        entry = report[which]
        assert entry["ops_per_call"] > 10
        assert sum(entry["by_type_ms"].values()) == pytest.approx(
            entry["total_ms"]
        )
        assert sum(entry["by_part_ms"].values()) == pytest.approx(
            entry["total_ms"]
        )
    # The parts are recognised: the backbone and the glimpse machinery all appear.
    parts = report["mgnet"]["by_part_ms"]
    assert {"backbone", "sampler", "fusion", "localization"} <= set(parts)
    assert report["ff"]["ops_per_call"] < report["mgnet"]["ops_per_call"]


def test_anytime_script_serves_the_offline_exit_rule(idx_dir):
    """The shipped pair on a few images: in every runtime the served early exit (the
    SavedModel graph, LiteRT's step file) gives the rule's prediction and glimpses."""
    report = _last_json(
        "anytime.py",
        f"--data_dir={idx_dir}",
        "--examples=6",
        "--validation_examples=3",
        "--warmup=1",
        "--runtimes=function,litert",  # XLA compiles the same graph, only slower to build
        "--reference=ff",
        "--accuracy_examples=8",
        "--sweep=0.5,1",
        "--json",
    )
    assert report["test_examples"] == 6
    # The swept thresholds, timed side by side: 1 means every glimpse for every image.
    assert set(report["sweep"]) == {"0.5", "1.0"}
    assert report["sweep"]["1.0"]["mean_glimpses_accuracy_examples"] == 5.0
    # The threshold was held to FF-Net's validation top-1; accuracy on 8 test images.
    assert "FF-Net" in report["threshold_chosen_on"]
    assert report["accuracy_examples"] == 8
    assert 1.0 <= report["mean_glimpses_accuracy_examples"] <= 5.0
    assert 1.0 <= report["mean_glimpses"] <= 5.0
    assert set(report["runtimes"]) == {"function", "litert"}
    for runtime in report["runtimes"].values():
        assert runtime["exit_agrees_with_offline_rule"] == 1.0
        assert runtime["exit_glimpses_agree"] == 1.0
        assert runtime["ff_mean_ms"] > 0 and runtime["mgnet_exit_mean_ms"] > 0
        # Served as the rule says, so scored as the offline figures are.
        assert runtime["exit_top1_served"] == pytest.approx(report["top1"]["mgnet_exit"])
        assert runtime["ff_top1_served"] == pytest.approx(report["top1"]["ff"])
        for value in ("0.5", "1.0"):
            assert runtime[f"exit_{value}_agrees_with_offline_rule"] == 1.0
            assert runtime[f"exit_{value}_glimpses_agree"] == 1.0
            assert runtime[f"mgnet_exit_{value}_mean_ms"] > 0


def test_litert_quantized_script_compares_the_files_with_keras(idx_dir):
    """The shipped pair on a few images: every quantization exported, the float32
    file's per-glimpse top-1 the Keras model's, the quantized files smaller."""
    report = _last_json(
        "litert_quantized.py", f"--data_dir={idx_dir}", "--examples=6", "--quantize=none,float16", "--json"
    )
    assert report["test_examples"] == 6
    for name, glimpses in (("ff", 1), ("mgnet", 5)):
        model = report[name]
        assert len(model["keras_top1"]) == glimpses
        assert model["none"]["top1"] == model["keras_top1"]
        assert model["float16"]["file_mb"] < 0.6 * model["none"]["file_mb"]
        assert model["float16"]["mean_ms"] > 0 and len(model["float16"]["top1"]) == glimpses
