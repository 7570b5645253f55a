"""The napari plugin (``pip install cytolens[napari]``): segment, track, measure, correct and fine-tune,
restore, classify, and open CTC folders and tracks tables.

Its widgets and readers are declared in ``napari.yaml`` (an npe2 manifest, found through the
``napari.manifest`` entry point) and live in :mod:`cytolens.napari._widgets`,
:mod:`cytolens.napari._task_widgets` (restore, classify) and :mod:`cytolens.napari._io` (readers). Nothing in the
core imports this package; importing it does not import napari. Long work runs in napari's
thread workers and reports its :class:`~cytolens.progress.ProgressEvent` s to a progress bar,
so the viewer never freezes.
"""
