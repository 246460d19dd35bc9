"""The report as text tables."""


def format_tables(report):
    """The report's sections as text tables (what evaluate.py prints)."""
    lines = []
    if "clean" in report:
        clean = report["clean"]
        lines.append(f"\nClean accuracy on {clean['num_examples']} images")
        lines.append(f"{'glimpses':>8} {'MFLOPs':>10} {'latency ms':>11} {'top-1 %':>8}")
        latency = clean.get(
            "latency_ms_batch1", [float("nan")] * len(clean["accuracy"])
        )
        for t, (m, ms, a) in enumerate(
            zip(clean["mflops"], latency, clean["accuracy"]), 1
        ):
            lines.append(f"{t:>8} {m:>10.3f} {ms:>11.2f} {100 * a:>8.2f}")
        if "per_class" in clean:
            lines.extend(_per_class_rows(clean["per_class"]))
        where = clean["localization"]
        lines.append("\nWhere the glimpses look (s: glimpse side / image side)")
        boxes = "median_iou" in where
        lines.append(
            f"{'glimpse':>8} {'mean s':>7} {'s p10-p90':>11}"
            + (f" {'centre err px':>13} {'median IoU':>10} {'IoU>=0.5':>8}" if boxes else "")
        )
        for t, (s, q) in enumerate(zip(where["mean_scale"], where["scale_quantiles"])):
            row = f"{t + 1:>8} {s:>7.3f} {q[0]:>5.2f}-{q[2]:<5.2f}"
            if boxes:
                row += (
                    f" {where['median_center_error_px'][t]:>13.1f}"
                    f" {where['median_iou'][t]:>10.2f}"
                    f" {100 * where['iou_at_least_0.5'][t]:>7.1f}%"
                )
            lines.append(row)
        lines.append("\nDynamic exit")
        lines.append(f"{'threshold':>9} {'glimpses':>9} {'MFLOPs':>10} {'top-1 %':>8}")
        for d in clean["dynamic_exit"]:
            lines.append(
                f"{d['threshold']:>9.2f} {d['mean_glimpses']:>9.2f} {d['mean_mflops']:>10.3f} {100 * d['accuracy']:>8.2f}"
            )
    if "attack" in report:
        attack = report["attack"]
        lines.append(
            f"\n{attack['attack'].upper()} ({attack['space']} space, eps {attack['eps']:.4f}) on {attack['num_examples']} images"
        )
        lines.append(
            f"{'steps':>5} {'top-1 %':>8}\n{0:>5} {100 * attack['clean_accuracy']:>8.2f}"
        )
        for k, a in zip(attack["steps"], attack["accuracy"]):
            lines.append(f"{k:>5} {100 * a:>8.2f}")
    if "corruptions" in report:
        section = report["corruptions"]
        lines.append("\nCorruptions: top-1 % after each glimpse, averaged over severities")
        for name, accuracy in section["accuracy"].items():
            row = " ".join(f"{100 * a:6.2f}" for a in accuracy)
            ce = section.get("relative_corruption_error", {}).get(name)
            lines.append(f"{name:>18} {row}" + ("" if ce is None else f"   CE {ce:.3f}"))
        lines.append(
            f"{'mean':>18} "
            + " ".join(f"{100 * a:6.2f}" for a in section["mean_accuracy"])
        )
    for entry in report.get("images", []):
        best = entry["top_per_glimpse"][-1][0]
        lines.append(
            f"{entry['path']}: {best['class']} ({best['probability']:.3f})  picture {entry['picture']}"
        )
    return "\n".join(lines)


MAX_CLASS_ROWS = 20


def _per_class_rows(per_class):
    """Top-1 % of each class after each glimpse; with more than MAX_CLASS_ROWS classes,
    those MAX_CLASS_ROWS that do worst after the last glimpse (all are in the JSON)."""
    names = per_class.get("names") or [f"class {k}" for k in range(len(per_class["count"]))]
    rows = [k for k, a in enumerate(per_class["accuracy"]) if a is not None]
    title = "\nTop-1 % per class after each glimpse"
    if len(rows) > MAX_CLASS_ROWS:
        rows = sorted(rows, key=lambda k: per_class["accuracy"][k][-1])[:MAX_CLASS_ROWS]
        title += f" (the {MAX_CLASS_ROWS} lowest after the last glimpse)"
    width = max([5] + [len(names[k]) for k in rows])
    lines = [title, f"{'class':>{width}} {'images':>6}  top-1 % after glimpse 1..T"]
    for k in rows:
        accuracy = " ".join(f"{100 * a:6.2f}" for a in per_class["accuracy"][k])
        lines.append(f"{names[k]:>{width}} {per_class['count'][k]:>6}  {accuracy}")
    return lines
