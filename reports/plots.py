"""The report's plots: accuracy against MFLOPs (early and dynamic exit) and
against attack steps."""

import os


def write_plots(report, directory):
    """Accuracy-versus-MFLOPs (early and dynamic exit) and accuracy-versus-steps PNGs."""
    import matplotlib  # noqa: PLC0415 (only needed when plotting)

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    paths = []
    if "clean" in report:
        clean = report["clean"]
        figure, axes = pyplot.subplots(figsize=(5, 3.5))
        axes.plot(
            clean["mflops"],
            [100 * a for a in clean["accuracy"]],
            "o-",
            label="exit after t glimpses",
        )
        dynamic = clean["dynamic_exit"]
        axes.plot(
            [d["mean_mflops"] for d in dynamic],
            [100 * d["accuracy"] for d in dynamic],
            "s--",
            label="dynamic exit",
        )
        axes.set(
            xlabel="MFLOPs per image", ylabel="top-1 accuracy (%)", title="Early exit"
        )
        axes.legend()
        paths.append(os.path.join(directory, "early_exit.png"))
        figure.tight_layout()
        figure.savefig(paths[-1], dpi=120)
        pyplot.close(figure)
    if "attack" in report:
        attack = report["attack"]
        figure, axes = pyplot.subplots(figsize=(5, 3.5))
        axes.plot(
            [0] + attack["steps"],
            [100 * a for a in [attack["clean_accuracy"]] + attack["accuracy"]],
            "o-",
        )
        axes.set(
            xlabel="attack steps",
            ylabel="top-1 accuracy (%)",
            title=f"{attack['attack'].upper()} eps={attack['eps'] * 255:.0f}/255 ({attack['space']})",
        )
        paths.append(os.path.join(directory, "attack.png"))
        figure.tight_layout()
        figure.savefig(paths[-1], dpi=120)
        pyplot.close(figure)
    return paths
