"""A model's training history on disk: a CSV table and a plot of loss and IoU per epoch."""

from __future__ import annotations

import csv
from pathlib import Path


def history_paths(model_path: Path) -> tuple[Path, Path]:
    base = model_path.with_suffix("") if model_path.suffix else model_path
    return base.with_name(base.name + ".history.csv"), base.with_name(base.name + ".history.png")


def write_history(model_path: Path, history: list[dict]) -> tuple[Path, Path]:
    """Write the training history as CSV and as a plot of loss and IoU per epoch."""
    from .io import atomic_write

    csv_path, plot_path = history_paths(Path(model_path))
    columns = sorted({k for row in history for k in row}, key=lambda k: (k != "epoch", k))

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)

    atomic_write(csv_path, write_csv)
    atomic_write(plot_path, lambda tmp: plot_history(history, tmp))
    return csv_path, plot_path


def plot_history(history: list[dict], path: Path) -> None:
    """Loss and mean IoU per epoch, training and validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax_loss, ax_iou = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for key, label in (("loss", "training"), ("val_loss", "validation")):
        if any(key in row for row in history):
            ax_loss.plot(epochs, [row.get(key, float("nan")) for row in history], marker=".", label=label)
    for key, label in (("mean_iou", "training"), ("val_mean_iou", "validation")):
        if any(key in row for row in history):
            ax_iou.plot(epochs, [row.get(key, float("nan")) for row in history], marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_iou.set(xlabel="epoch", ylabel="mean IoU", title="Mean IoU", ylim=(0, 1))
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, format="png", dpi=100)
