"""A live plot of training and validation loss and IoU per epoch (matplotlib in Qt)."""

from __future__ import annotations

import math

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure


class LossPlot(FigureCanvasQTAgg):
    """Two small axes: loss (left) and mean IoU (right), training and validation; for
    instance masks the right axis also shows the validation objects' AP@0.5."""

    def __init__(self):
        self.figure = Figure(figsize=(4, 2.2), layout="constrained")
        super().__init__(self.figure)
        self.ax_loss, self.ax_iou = self.figure.subplots(1, 2)
        self.rows: list[dict] = []
        self.setMinimumHeight(180)
        self.redraw()

    def clear(self) -> None:
        self.rows = []
        self.redraw()

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.redraw()

    def series(self, key: str) -> list[float]:
        return [row.get(key, math.nan) for row in self.rows]

    def redraw(self) -> None:
        epochs = self.series("epoch")
        objects = any("val_ap_50" in row for row in self.rows)
        for ax, keys, labels, title in (
            (self.ax_loss, ("loss", "val_loss"), ("training", "validation"), "loss"),
            (
                self.ax_iou,
                ("mean_iou", "val_mean_iou", "val_ap_50"),
                ("training", "validation", "validation AP@0.5"),
                "mean IoU, objects' AP@0.5" if objects else "mean IoU",
            ),
        ):
            ax.clear()
            for key, label in zip(keys, labels):
                if any(key in row for row in self.rows):
                    ax.plot(epochs, self.series(key), marker=".", label=label)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if self.rows:
                ax.legend(fontsize=7)
        self.ax_iou.set_ylim(0, 1)
        self.draw_idle()
