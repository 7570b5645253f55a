"""pytest collects this package's docstrings (``--doctest-modules``): leave the widgets out without napari."""

import importlib.util

WIDGETS = ["_widgets.py", "_task_widgets.py"]
collect_ignore = [] if all(importlib.util.find_spec(m) for m in ("napari", "magicgui")) else WIDGETS
