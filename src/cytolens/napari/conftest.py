"""pytest collects this package's docstrings (``--doctest-modules``): leave the widgets out without napari."""

import importlib.util

collect_ignore = [] if all(importlib.util.find_spec(m) for m in ("napari", "magicgui")) else ["_widgets.py"]
