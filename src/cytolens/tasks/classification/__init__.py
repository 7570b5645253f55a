"""Classification and phenotyping: say what an image or a cell is, and find phenotypes in learned features.

* :mod:`.config` — the training config (``task: classification``; no torch import);
* :mod:`.data` — the training items (folder per class, or a CSV of ``path,class``),
  single-cell crops, channel selection, class weights;
* :mod:`.task` — the task the generic training run trains (:mod:`cytolens.train.task`);
* :mod:`.inference` — :func:`classify` and :func:`embed` (penultimate features, PCA,
  KMeans clusters) with a bundled or trained model;
* :mod:`.evaluation` — per-class precision/recall/F1, balanced accuracy and the
  confusion matrix as CSV + PNG.
"""
