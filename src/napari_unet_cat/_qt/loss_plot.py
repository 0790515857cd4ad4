"""A live plot of training and validation loss and IoU per epoch, painted with Qt.

Two small panels: the loss (left) and the mean IoU (right, 0 to 1), for training and
validation; for instance masks the right panel also shows the validation objects' AP@0.5.
It paints polylines with ``QPainter`` (a repaint takes a millisecond or two), so adding
a point never stalls the viewer while training uses the CPU, on the dock's own background
in the text colour of napari's theme (dark or light).
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPalette, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

#: (key, legend, colour) of each series, per panel.
PANELS = (
    ("loss", (("loss", "training", "#1f77b4"), ("val_loss", "validation", "#ff7f0e"))),
    (
        "mean IoU",
        (
            ("mean_iou", "training", "#1f77b4"),
            ("val_mean_iou", "validation", "#ff7f0e"),
            ("val_ap_50", "validation AP@0.5", "#2ca02c"),
        ),
    ),
)


class LossPlot(QWidget):
    """Loss and IoU per epoch; :meth:`add` one history row after each epoch."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.rows: list[dict] = []
        self.setMinimumHeight(180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def clear(self) -> None:
        self.rows = []
        self.update()

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.update()  # a repaint, queued: Qt merges several into one

    def series(self, key: str) -> list[float]:
        return [row.get(key, math.nan) for row in self.rows]

    def title(self, panel: str) -> str:
        if panel == "mean IoU" and any("val_ap_50" in row for row in self.rows):
            return "mean IoU, objects' AP@0.5"
        return panel

    def paintEvent(self, _event) -> None:  # Qt calls it by this name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont(self.font())
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
        painter.setFont(font)
        width = self.width() / len(PANELS)
        for i, (panel, keys) in enumerate(PANELS):
            self._paint_panel(painter, QRectF(i * width, 0, width, self.height()), panel, keys)
        painter.end()

    def _paint_panel(self, painter: QPainter, area: QRectF, panel: str, keys) -> None:
        text_h = painter.fontMetrics().height()
        label_w = painter.fontMetrics().horizontalAdvance("0.0000") + 4
        box = area.adjusted(label_w + 2, text_h + 6, -8, -(text_h + 6))
        text = self.palette().color(QPalette.ColorRole.WindowText)
        faint = QColor(text)
        faint.setAlphaF(0.45)
        painter.setPen(QPen(text))
        painter.drawText(QRectF(area.left(), 2, area.width(), text_h), Qt.AlignmentFlag.AlignCenter, self.title(panel))
        painter.setPen(QPen(faint))
        painter.drawRect(box)
        shown = [(k, label, colour) for k, label, colour in keys if any(k in row for row in self.rows)]
        epochs = self.series("epoch")
        values = [v for k, _, _ in shown for v in self.series(k) if math.isfinite(v)]
        if panel == "mean IoU":
            low, high = 0.0, 1.0
        elif values:
            low, high = min(values), max(values)
            pad = (high - low) * 0.05 or max(abs(high) * 0.05, 1e-3)
            low, high = low - pad, high + pad
        else:
            low, high = 0.0, 1.0
        first, last = (min(epochs), max(epochs)) if epochs else (0, 1)
        span = (last - first) or 1

        def point(epoch: float, value: float) -> QPointF:
            x = box.left() + (epoch - first) / span * box.width()
            y = box.bottom() - (value - low) / (high - low) * box.height()
            return QPointF(x, y)

        painter.setPen(QPen(text))
        for value, flag in ((high, Qt.AlignmentFlag.AlignTop), (low, Qt.AlignmentFlag.AlignBottom)):
            painter.drawText(
                QRectF(area.left(), box.top() if flag == Qt.AlignmentFlag.AlignTop else box.bottom() - text_h,
                       label_w, text_h),
                Qt.AlignmentFlag.AlignRight | flag,
                f"{value:.3g}",
            )  # fmt: skip
        if epochs:
            painter.drawText(
                QRectF(box.left(), box.bottom() + 2, box.width(), text_h),
                Qt.AlignmentFlag.AlignCenter,
                f"epoch {first:g}" + (f" to {last:g}" if last != first else ""),
            )
        # Falling curves leave the top right free, rising ones (IoU) the bottom right.
        legend_y = box.top() + 2 if panel == "loss" else box.bottom() - 2 - text_h * len(shown)
        for key, label, colour in shown:
            pen = QPen(QColor(colour))
            pen.setWidthF(1.6)
            painter.setPen(pen)
            points = [point(e, v) for e, v in zip(epochs, self.series(key)) if math.isfinite(v)]
            if len(points) > 1:
                painter.drawPolyline(QPolygonF(points))
            for p in points[-1:]:
                painter.drawEllipse(p, 2.0, 2.0)
            painter.drawText(
                QRectF(box.left() + 4, legend_y, box.width() - 8, text_h), Qt.AlignmentFlag.AlignRight, label
            )
            legend_y += text_h
