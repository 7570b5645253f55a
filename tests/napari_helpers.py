"""Shared setup of the napari plugin's widget tests: import it first, so that the module skips cleanly
without napari (``pip install cytolens[napari]``), pytest-qt or Qt's system libraries; headless on Qt's
offscreen platform."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
napari = pytest.importorskip("napari", reason="the napari plugin needs napari: pip install cytolens[napari]")
pytest.importorskip("pytestqt", reason="the plugin tests need pytest-qt")
pytest.importorskip("qtpy.QtWidgets", reason="Qt does not load here (its system libraries are missing)")

#: the marks of every widget test module (``pytestmark = PLUGIN_MARKS``)
PLUGIN_MARKS = [pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning"),
                pytest.mark.usefixtures("one_torch_thread")]


def wait(qtbot, widget, timeout: int = 120_000) -> None:
    """Wait until the widget's thread worker has finished."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)
