"""Classify images or single cells with a classifier package, and embed them (features, PCA, clusters).

The network input is made as in training (:mod:`.task`): the channels ``model.json``
declares (``input.file_channels``, a subset of the file's), resized to ``input.size``,
normalized per channel with the training set's percentiles, plus the object's mask when
the model reads one. Cells are crops of ``input.source_size`` pixels (or ``crop_size``)
centred on each object of a label image, zero-padded at the image border.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cytolens.errors import InvalidModelError, InvalidParameterError
from cytolens.tasks.classification.data import cell_crops, resize, select_channels
from cytolens.tasks.classification.task import normalize, predict_batches

ImageLike = np.ndarray | str | os.PathLike


@dataclass(frozen=True)
class ClassifierInput:
    """How a package's network reads an image (from its ``model.json``)."""

    classes: list[str]
    file_channels: list[int] | None
    file_channel_count: int | None
    size: int
    mask_channel: bool
    source_size: int
    low: list[float]
    high: list[float]

    @classmethod
    def of(cls, package) -> ClassifierInput:
        meta = package.meta
        if meta.get("task") != "classification" or not meta.get("classes"):
            raise InvalidModelError(f"model {meta.get('name')!r} is a {meta.get('task')} model, not a classifier")
        entry, norm = meta["input"], meta["normalization"]
        return cls(list(meta["classes"]), entry.get("file_channels"), entry.get("file_channel_count"),
                   int(entry["size"]), bool(entry.get("mask_channel")), int(entry.get("source_size") or entry["size"]),
                   list(norm["channel_low"]), list(norm["channel_high"]))

    def channels(self, image: np.ndarray, where: str) -> np.ndarray:
        return select_channels(image, self.file_channels, where, self.file_channel_count)

    def whole(self, image: np.ndarray, where: str) -> np.ndarray:
        """The network input ``(C, S, S)`` of a whole image."""
        return normalize(resize(self.channels(image, where), self.size), self.low, self.high, None, self.mask_channel)

    def cells(self, image: np.ndarray, labels: np.ndarray, where: str, crop_size: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """The network inputs ``(N, C, S, S)`` of every object of ``labels``, and the object ids."""
        crops, masks, ids = cell_crops(self.channels(image, where), labels, crop_size or self.source_size,
                                       where=f"the label image of {where}")
        inputs = []
        for crop, mask in zip(crops, masks):
            small_mask = resize(mask[None], self.size)[0] > 0.5
            inputs.append(normalize(resize(crop, self.size), self.low, self.high, small_mask.astype(np.float32),
                                    self.mask_channel))
        return np.stack(inputs), ids


def _load_package(model):
    from cytolens.api import _load

    return _load(model)


def _read(item: ImageLike, k: int) -> tuple[np.ndarray, str]:
    from cytolens.io import read_image

    if isinstance(item, str | os.PathLike):
        return read_image(item), str(item)
    return np.asarray(item), f"image {k}"


def _as_list(images) -> list:
    if isinstance(images, np.ndarray | str | os.PathLike):
        return [images]
    images = list(images)
    if not images:
        raise InvalidParameterError("no images to classify")
    return images


def network_inputs(package, images, labels=None, crop_size: int | None = None
                   ) -> tuple[np.ndarray, pd.DataFrame, ClassifierInput]:
    """The network inputs of images (one each) or of the cells of one image (``labels``), and their index table."""
    spec = ClassifierInput.of(package)
    if labels is not None:
        from cytolens.io import read_image

        items = _as_list(images)
        if len(items) != 1:
            raise InvalidParameterError(f"labels go with one image; got {len(items)} images")
        image, where = _read(items[0], 0)
        label_image = read_image(labels) if isinstance(labels, str | os.PathLike) else np.asarray(labels)
        inputs, ids = spec.cells(image, label_image, where, crop_size)
        return inputs, pd.DataFrame({"path": where, "label": ids.astype(np.int64)}), spec
    inputs, names = [], []
    for k, item in enumerate(_as_list(images)):
        image, where = _read(item, k)
        inputs.append(spec.whole(image, where))
        names.append(where)
    return np.stack(inputs), pd.DataFrame({"path": names}), spec


def classify(images, model="blood-cells", labels=None, *, crop_size: int | None = None,
             batch_size: int = 128) -> pd.DataFrame:
    """Classify whole images, or every cell of one image when ``labels`` is given.

    Parameters
    ----------
    images : ndarray, path, or a list of them
        ``(Y, X)`` or ``(Y, X, C)`` images; the model takes the channels its
        ``model.json`` declares (``input.file_channels``).
    model : str, path or ModelPackage
        A classifier: bundled name (``blood-cells``, ``cell-cycle-label-free``) or package.
    labels : ndarray or path, optional
        A label image of the (one) image: each object is classified from a crop centred
        on it (``crop_size`` pixels, by default the size the model was trained on).

    Returns
    -------
    pandas.DataFrame
        One row per image (``path``) or per cell (``path, label``), then ``predicted``
        and ``p_<class>`` per class (the softmax probabilities, summing to 1).
    """
    package = _load_package(model)
    inputs, table, spec = network_inputs(package, images, labels, crop_size)
    probabilities = predict_batches(package.inference_network, inputs, batch_size)
    table["predicted"] = np.asarray(spec.classes)[probabilities.argmax(1)]
    for k, name in enumerate(spec.classes):
        table[f"p_{name}"] = probabilities[:, k]
    return table


def embed(images, model="blood-cells", labels=None, *, clusters: int | None = None, crop_size: int | None = None,
          batch_size: int = 128, seed: int = 0, measurements: bool = True) -> pd.DataFrame:
    """Penultimate features of images or cells, their 2D PCA projection and (optionally) KMeans clusters.

    Returns one row per image or cell: ``path`` (``label``), ``predicted``, ``pc1``,
    ``pc2``, ``cluster`` (when ``clusters`` is given), then ``f0 ... f<D-1>``; with
    ``labels`` and ``measurements`` the object's :func:`cytolens.measure` columns are
    joined on ``label``.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    package = _load_package(model)
    inputs, table, spec = network_inputs(package, images, labels, crop_size)
    network = package.inference_network
    features = predict_batches(network, inputs, batch_size, features=True)
    probabilities = predict_batches(network, inputs, batch_size)
    table["predicted"] = np.asarray(spec.classes)[probabilities.argmax(1)]
    n = len(features)
    if n >= 2:
        projection = PCA(n_components=2, random_state=seed).fit_transform(features)
    else:
        projection = np.zeros((n, 2))
    table["pc1"], table["pc2"] = projection[:, 0], projection[:, 1]
    if clusters is not None:
        if not 1 <= clusters <= n:
            raise InvalidParameterError(f"clusters must be between 1 and the number of items ({n}), got {clusters}")
        table["cluster"] = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit_predict(features)
    if labels is not None and measurements:
        from cytolens.io import read_image
        from cytolens.measure import measure

        image, _ = _read(_as_list(images)[0], 0)
        label_image = read_image(labels) if isinstance(labels, str | os.PathLike) else np.asarray(labels)
        table = table.merge(measure(label_image, image), on="label", how="left")
    features_table = pd.DataFrame(features, columns=[f"f{k}" for k in range(features.shape[1])])
    return pd.concat([table.reset_index(drop=True), features_table], axis=1)


def plot_embedding(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Scatter of ``pc1, pc2`` (or ``umap1, umap2``) coloured by ``cluster`` (else by ``predicted``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = ("umap1", "umap2") if "umap1" in table else ("pc1", "pc2")
    colour = "cluster" if "cluster" in table else "predicted"
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for value, group in table.groupby(colour, sort=True):
        ax.scatter(group[x], group[y], s=8, alpha=0.7, label=str(value))
    ax.set(xlabel=x, ylabel=y, title=title or f"{'UMAP' if x == 'umap1' else 'PCA'} of the learned features")
    ax.legend(title=colour, fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def add_umap(table: pd.DataFrame, seed: int = 0) -> bool:
    """Add ``umap1, umap2`` from the ``f*`` columns when umap-learn is installed; whether it was."""
    try:
        import umap
    except ImportError:
        return False
    features = table[[c for c in table.columns if c.startswith("f") and c[1:].isdigit()]].to_numpy()
    if len(features) < 5:
        return False
    coords = umap.UMAP(random_state=seed, n_neighbors=min(15, len(features) - 1)).fit_transform(features)
    table["umap1"], table["umap2"] = coords[:, 0], coords[:, 1]
    return True


def classify_paths(paths: Sequence[Path], model, batch_size: int = 128) -> pd.DataFrame:
    """:func:`classify` over image files in batches of ``batch_size`` (memory bounded by the batch)."""
    parts = [classify([str(p) for p in paths[start:start + batch_size]], model, batch_size=batch_size)
             for start in range(0, len(paths), batch_size)]
    if not parts:
        raise InvalidParameterError("no images to classify")
    return pd.concat(parts, ignore_index=True)
