"""Draw docs/napari_widget.png: the cytolens plugin's Segment widget on a real DSB2018 stained-tissue image.

The image is one of the bundled ``nuclei`` model's test-split images (never trained on) from
../shared/data/dsb2018_stage1_train. The Segment widget runs in its thread worker as a user
would start it; the per-cell table widget is docked below it and filled too.

Usage (napari's canvas needs OpenGL: on a machine without a display, run it in a virtual X server)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/napari_screenshot.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dsb2018_stage1_train"
OUT = ROOT / "docs" / "napari_widget.png"


def pick_image() -> str:
    """The first stained (group d) image of the nuclei model's test split."""
    import pandas as pd

    split = json.loads((ROOT / "src/cytolens/models/bundled/nuclei/split.json").read_text())
    sources = pd.read_csv(ROOT / "training/nuclei/dsb_sources.csv", dtype=str)
    group = set(sources.loc[sources["group"] == "stained 256x320 d", "id"])
    return min(i for i in split["test"] if i in group)


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore", message="napari support for the PyQt5")  # a toast over the picture otherwise
    import napari
    from napari.settings import get_settings
    from qtpy.QtWidgets import QApplication

    from cytolens.io import read_image
    from cytolens.napari._widgets import SegmentWidget, TableWidget

    get_settings().application.gui_notification_level = "none"  # no toast (e.g. about the Qt backend) in the picture
    image_id = pick_image()
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    viewer.add_image(read_image(DATA / "images" / f"{image_id}.tif"), name="H&E (DSB2018)", rgb=True)
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="cytolens: Segment", area="right")
    segment.start()
    while segment.busy:
        QApplication.processEvents()
    table = TableWidget(viewer)
    viewer.window.add_dock_widget(table, name="cytolens: Per-cell table", area="right")
    table.image.value = "H&E (DSB2018)"
    table.start()
    while table.busy:
        QApplication.processEvents()
    viewer.layers["H&E (DSB2018) labels"].contour = 2
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
    from napari._qt.dialogs.qt_notification import NapariQtNotification  # private: the toasts, closed for the picture

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(str(OUT), canvas_only=False)
    print(f"wrote {OUT} ({image_id}; {segment.status.value}; table: {table.status.value})")
    viewer.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
