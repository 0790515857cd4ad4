"""Pictures of the plugin's widgets for the docs, from a real napari viewer.

Usage (under ``xvfb-run -a`` where there is no display):
    python docs/make_screenshots.py [--out docs/images]

Opens napari with the plugin's sample (image, strokes, hidden mask), docks each widget
(Train U-Net, Segment with U-Net and its bioimage.io export panel, Segment a folder,
Measure objects, Proofread objects) and
saves each as ``widget-*.png``. It prints the Qt binding it ran under (the docs' pictures
come from PyQt6, napari's recommended binding).
"""

from __future__ import annotations

import argparse
from pathlib import Path

PLUGIN = "napari-unet-cat"
WIDGETS = {
    "Train U-Net": "widget-train.png",
    "Segment with U-Net": "widget-segment.png",
    "Segment a folder": "widget-folder.png",
    "Measure objects": "widget-measure.png",
    "Proofread objects": "widget-proofread.png",
}


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images")
    args = parser.parse_args(argv)
    import napari
    import qtpy
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)  # the docks' height follows the window's
    viewer.open_sample(PLUGIN, "synthetic_cells")
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, file_name in WIDGETS.items():
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        for _ in range(20):
            QApplication.processEvents()
        path = args.out / file_name
        widget.native.grab().save(str(path))
        written.append(path)
        if name == "Segment with U-Net":
            panel = widget.open_export()
            for _ in range(20):
                QApplication.processEvents()
            path = args.out / "widget-export-bioimageio.png"
            panel.native.grab().save(str(path))
            panel.native.close()
            written.append(path)
    viewer.close()
    print(f"Qt binding: {qtpy.API_NAME} {qtpy.QT_VERSION}")
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
