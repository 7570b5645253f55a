"""Evaluate predictions stored in files against ground truth stored in files.

Each ``evaluate_*`` function reads the prediction and the truth (a file or a folder of
files paired by name), scores them with :mod:`cytolens.metrics`, and writes into an
output folder:

* a per-item table (``per_image.csv``, ``per_item.csv`` or ``per_frame.csv``),
* ``summary.json`` with the scores, the parameters and the cytolens version,
* plots where people look (AP vs IoU threshold, confusion matrix, per-frame errors, …).

Nothing existing is overwritten unless ``overwrite=True``. Each returns an
:class:`Evaluation` with the summary, the table and the written paths.

Example
-------
>>> ev = evaluate_segmentation("pred_labels/", "truth_labels/", "eval/")  # doctest: +SKIP
>>> ev.summary["ap"]["0.5"]  # doctest: +SKIP
0.83
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cytolens.errors import ImageReadError, InvalidParameterError, OutputExistsError
from cytolens.io.results import LABEL_FILE_SUFFIXES

__all__ = ["Evaluation", "evaluate_classification", "evaluate_restoration", "evaluate_segmentation",
           "evaluate_tracking", "pair_files"]

# what prediction / truth files commonly add to the image name: a label file's suffixes, then others
_NAME_SUFFIXES = LABEL_FILE_SUFFIXES + ("_seg", "_pred", "_prediction", "_gt", "_truth", "_restored", "_target")


@dataclass(frozen=True)
class Evaluation:
    """What an ``evaluate_*`` call computed and wrote."""

    summary: dict
    table: pd.DataFrame
    files: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- shared plumbing


def _version() -> str:
    try:
        from cytolens import __version__
    except ImportError:  # partially initialized package during development
        return "unknown"
    return __version__


def _base_name(path: Path) -> str:
    from cytolens.io.results import file_stem

    stem = file_stem(path)
    for suffix in _NAME_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def pair_files(pred: str | os.PathLike, truth: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """Pair prediction and truth images: two files, or two folders matched by file name.

    Names are compared without extension and without a trailing ``_labels``, ``_mask(s)``,
    ``_seg``, ``_pred``, ``_gt``, … so ``img1_labels.tif`` pairs with ``img1.png``.
    A prediction folder that ``cytolens segment`` wrote (it holds ``<stem>_labels.*`` files)
    gives its label images only: its other outputs (``_overlay.png``, ``_rois.zip``, …) are
    skipped, and any other image in it is an error that names it (which file would be the
    prediction is then not clear).
    Raises :class:`~cytolens.errors.ImageReadError` for missing paths and
    :class:`~cytolens.errors.InvalidParameterError` naming the unpaired files.

    >>> import tempfile, numpy as np
    >>> from cytolens.io import write_image, write_labels
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = write_labels(root / "truth" / "a.tif", np.eye(8, dtype=np.uint16))
    >>> _ = write_labels(root / "results" / "a_labels.tif", np.eye(8, dtype=np.uint16))
    >>> _ = write_image(root / "results" / "a_overlay.png", np.zeros((8, 8, 3), np.uint8))
    >>> [(name, p.name, t.name) for name, p, t in pair_files(root / "results", root / "truth")]
    [('a', 'a_labels.tif', 'a.tif')]

    Returns
    -------
    list of ``(name, pred_path, truth_path)``, sorted by name.
    """
    from cytolens.io import list_images

    pred, truth = Path(pred), Path(truth)
    for what, path in (("prediction", pred), ("ground truth", truth)):
        if not path.exists():
            raise ImageReadError(f"{what} not found: {path}")
    if pred.is_file() and truth.is_file():
        from cytolens.io.results import file_stem, is_labels_file, is_result_file

        if is_result_file(pred) and not is_labels_file(pred):
            raise InvalidParameterError(f"{pred} is not a label image but another output of cytolens segment; give "
                                        f"its label image, {file_stem(pred).rsplit('_', 1)[0]}_labels.tif")
        return [(_base_name(truth), pred, truth)]
    if pred.is_file() != truth.is_file():
        raise InvalidParameterError(f"give two files or two folders, not a {'file' if pred.is_file() else 'folder'} "
                                    f"({pred}) and a {'file' if truth.is_file() else 'folder'} ({truth})")
    pairs = []
    by_name: dict[str, dict[str, Path]] = {"pred": {}, "truth": {}}
    for side, folder in (("pred", pred), ("truth", truth)):
        files = list_images(folder)
        if not files:
            raise ImageReadError(f"{folder} holds no images (.tif, .png, .jpg, …)")
        if side == "pred":
            files = _segment_results(folder, files)
        for path in files:
            name = _base_name(path)
            if name in by_name[side]:
                raise InvalidParameterError(f"{folder}: {by_name[side][name].name} and {path.name} both stand for "
                                            f"item {name!r}; keep one")
            by_name[side][name] = path
    only_pred = sorted(set(by_name["pred"]) - set(by_name["truth"]))
    only_truth = sorted(set(by_name["truth"]) - set(by_name["pred"]))
    if only_pred or only_truth:
        parts = []
        if only_truth:
            parts.append(f"no prediction for {only_truth[:5]}{' …' if len(only_truth) > 5 else ''}")
        if only_pred:
            parts.append(f"no ground truth for {only_pred[:5]}{' …' if len(only_pred) > 5 else ''}")
        raise InvalidParameterError(f"prediction folder {pred} and truth folder {truth} do not match: "
                                    + "; ".join(parts) + " (files pair by name)")
    for name in sorted(by_name["truth"]):
        pairs.append((name, by_name["pred"][name], by_name["truth"][name]))
    return pairs


def _segment_results(folder: Path, files: list[Path]) -> list[Path]:
    """The prediction images of a folder: all of them, or in a folder ``cytolens segment`` wrote (one with
    ``*_labels.*`` files) its label images only, its other outputs skipped and any other image an error."""
    from cytolens.io.results import is_labels_file, is_result_file

    labels = [path for path in files if is_labels_file(path)]
    if not labels:
        return files
    others = [path.name for path in files if not is_result_file(path)]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise InvalidParameterError(f"{folder} holds label images written by cytolens segment (*_labels.*) and "
                                    f"other images ({shown}): which are the predictions is not clear; move the "
                                    "other images out, or give a folder that holds the predictions only")
    return labels


def _prepare_output(output: str | os.PathLike, names: Sequence[str], overwrite: bool) -> list[Path]:
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InvalidParameterError(f"output {output} exists and is not a folder")
    paths = [output / n for n in names]
    if not overwrite:
        for path in paths:
            if path.exists():
                raise OutputExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    return paths


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    return value


def _write_json(path: Path, data: dict) -> None:
    from cytolens.io import atomic_write

    text = json.dumps(_jsonable(data), indent=2, allow_nan=False)
    atomic_write(path, lambda tmp: tmp.write_text(text + "\n"), overwrite=True)


def _write_figure(path: Path, draw: Callable) -> None:
    """Draw on a fresh matplotlib Figure (no pyplot global state) and save it atomically."""
    from matplotlib.figure import Figure

    from cytolens.io import atomic_write

    fig = Figure(figsize=(6, 4.5), layout="constrained")
    draw(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), overwrite=True)


def _finish(paths: list[Path], table: pd.DataFrame, summary: dict, plots: dict[str, Callable]) -> Evaluation:
    from cytolens.io import make_folder, write_table

    make_folder(paths[0].parent)
    write_table(paths[0], table, overwrite=True)
    _write_json(paths[1], summary)
    for path in paths[2:]:
        _write_figure(path, plots[path.name])
    return Evaluation(summary=_jsonable(summary), table=table, files=paths)


def _progress(items, quiet: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="item", disable=quiet)


# --------------------------------------------------------------------------- segmentation


def _read_labels(path: Path) -> np.ndarray:
    from cytolens.errors import InvalidImageError
    from cytolens.io import read_image

    image = read_image(path)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        raise InvalidImageError(f"{path} looks like an RGB image ({image.shape}); a label image holds one integer "
                                "per pixel (0 = background)")
    if not np.issubdtype(image.dtype, np.integer):
        if np.issubdtype(image.dtype, np.floating) and np.all(image == np.round(image)):
            return image.astype(np.int64)
        raise InvalidImageError(f"{path} holds {image.dtype} values; a label image holds integers (0 = background)")
    return image


def evaluate_segmentation(pred: str | os.PathLike, truth: str | os.PathLike, output: str | os.PathLike,
                          thresholds: Sequence[float] | None = None, overwrite: bool = False,
                          quiet: bool = True) -> Evaluation:
    """Score predicted label images against truth label images.

    Parameters
    ----------
    pred, truth : a label image each, or two folders of label images paired by name
        (see :func:`pair_files`); 0 = background.
    output : folder for ``per_image.csv``, ``summary.json`` and ``ap_vs_iou.png``.
    thresholds : IoU thresholds of the AP curve (default 0.50:0.05:0.95); matches use ``IoU >= t``.
    overwrite : replace existing outputs.
    quiet : no progress bar.

    Returns
    -------
    Evaluation
        ``summary`` holds per-image mean and pooled AP per threshold, the DSB2018 score, and
        the mean of every per-image column (PQ, AJI, Dice, Jaccard, error counts, …).
    """
    from cytolens.metrics import segmentation as seg

    thresholds = tuple(float(t) for t in (seg.KAGGLE_THRESHOLDS if thresholds is None else thresholds))
    if not thresholds or any(not 0 <= t <= 1 for t in thresholds):
        raise InvalidParameterError(f"IoU thresholds must lie in [0, 1], got {list(thresholds)}")
    paths = _prepare_output(output, ["per_image.csv", "summary.json", "ap_vs_iou.png"], overwrite)
    pairs = pair_files(pred, truth)
    rows = []
    pooled = {t: [0, 0, 0] for t in thresholds}
    for name, pred_path, truth_path in _progress(pairs, quiet, "scoring"):
        p, t = _read_labels(pred_path), _read_labels(truth_path)
        if p.shape != t.shape:
            raise InvalidParameterError(f"{name}: prediction {pred_path.name} has shape {p.shape} but truth "
                                        f"{truth_path.name} has {t.shape}")
        iou, tid, pid = seg.iou_matrix(t, p)
        row = {"item": name, "pred_file": pred_path.name, "truth_file": truth_path.name,
               "n_true": len(tid), "n_pred": len(pid)}
        for thr in thresholds:
            m = seg.match_iou_matrix(iou, tid, pid, thr, False)
            row[f"ap@{thr:.2f}"] = m.average_precision
            pooled[thr][0] += m.tp
            pooled[thr][1] += m.fp
            pooled[thr][2] += m.fn
        m50 = seg.match_iou_matrix(iou, tid, pid, 0.5, False)
        row.update(tp=m50.tp, fp=m50.fp, fn=m50.fn, precision=m50.precision, recall=m50.recall, f1=m50.f1,
                   mean_matched_iou=m50.mean_matched_iou,
                   dsb2018=float(np.mean([seg.match_iou_matrix(iou, tid, pid, k, True).average_precision
                                          for k in seg.KAGGLE_THRESHOLDS])))
        pq = seg.panoptic_quality(t, p)
        row.update(pq=pq.pq, sq=pq.sq, rq=pq.rq, aji=seg.aggregated_jaccard_index(t, p))
        px = seg.pixel_scores(t, p)
        row.update(pixel_dice=px["dice"], pixel_jaccard=px["jaccard"])
        err = seg.object_errors(t, p)
        row.update(correct=err.correct, missed=err.missed, extra=err.extra, merge=err.merge, split=err.split,
                   catastrophe=err.catastrophe)
        rows.append(row)
    table = pd.DataFrame(rows)
    ap_mean = {f"{thr:g}": float(table[f"ap@{thr:.2f}"].mean()) for thr in thresholds}
    ap_pooled = {f"{thr:g}": seg._ratio(tp, tp + fp + fn) for thr, (tp, fp, fn) in pooled.items()}
    numeric = table.drop(columns=["item", "pred_file", "truth_file"])
    summary = {
        "task": "segmentation", "n_items": len(table), "pred": str(pred), "truth": str(truth),
        "ap": ap_mean, "ap_pooled": ap_pooled,
        "means": {c: float(numeric[c].mean()) for c in numeric.columns if not c.startswith("ap@")},
        "totals": {c: int(numeric[c].sum()) for c in ("n_true", "n_pred", "tp", "fp", "fn", "correct", "missed",
                                                     "extra", "merge", "split", "catastrophe")},
        "conventions": {"ap": "TP / (TP + FP + FN), matches at IoU >= threshold, mean over images",
                        "ap_pooled": "TP, FP, FN summed over images first",
                        "dsb2018": "mean AP over 0.50:0.05:0.95 with IoU > threshold, per image",
                        "object_errors": "Caicedo et al. 2019, cutoff1 0.4, cutoff2 0.1"},
        "thresholds": list(thresholds), "cytolens_version": _version(),
    }

    def draw(fig):
        ax = fig.subplots()
        ax.plot(thresholds, list(ap_mean.values()), "o-", label="mean over images")
        ax.plot(thresholds, list(ap_pooled.values()), "s--", label="pooled")
        ax.set(xlabel="IoU threshold", ylabel="AP = TP / (TP + FP + FN)", ylim=(0, 1.02),
               title=f"Average precision ({len(table)} images)")
        ax.grid(alpha=0.3)
        ax.legend()

    return _finish(paths, table, summary, {"ap_vs_iou.png": draw})


# --------------------------------------------------------------------------- classification

_KEY_COLUMNS = ("id", "item", "name", "file", "filename", "image", "path")
_TRUTH_COLUMNS = ("class", "label", "truth", "target", "y_true")
_PRED_COLUMNS = ("prediction", "predicted", "pred", "class", "label", "y_pred")


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise ImageReadError(f"{what} table not found: {path}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, sep=None, engine="python") if path.suffix.lower() != ".csv" else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for a bad file; the user needs one message
        raise ImageReadError(f"cannot read {path} as a table (.csv, .tsv or .parquet): {exc}") from None


def _pick_column(table: pd.DataFrame, given: str | None, candidates: Sequence[str], what: str, path: Path) -> str:
    if given is not None:
        if given not in table.columns:
            raise InvalidParameterError(f"{path} has no column {given!r}; its columns are {list(table.columns)}")
        return given
    for c in candidates:
        if c in table.columns:
            return c
    raise InvalidParameterError(f"cannot tell which column of {path} holds the {what}; columns are "
                                f"{list(table.columns)} — name it with the matching option")


def evaluate_classification(pred: str | os.PathLike, truth: str | os.PathLike, output: str | os.PathLike,
                            key: str | None = None, truth_column: str | None = None,
                            pred_column: str | None = None, overwrite: bool = False) -> Evaluation:
    """Score predicted classes (a table) against true classes (a table), joined on an item key.

    Parameters
    ----------
    pred, truth : CSV/TSV/Parquet tables with one row per item.
    output : folder for ``per_item.csv``, ``per_class.csv``, ``summary.json``,
        ``confusion_matrix.png`` (counts) and ``confusion_matrix_normalized.png`` (rows sum to 1).
    key : the item column in both tables (default the first of id, item, name, file, …).
    truth_column : class column of ``truth`` (default class, label, …).
    pred_column : class column of ``pred`` (default prediction, predicted, pred, class, label, …).
    overwrite : replace existing outputs.
    """
    from cytolens.io import write_table
    from cytolens.metrics.classification import classification_scores

    pred, truth = Path(pred), Path(truth)
    paths = _prepare_output(output, ["per_item.csv", "summary.json", "confusion_matrix.png",
                                     "confusion_matrix_normalized.png", "per_class.csv"], overwrite)
    ptab, ttab = _read_csv(pred, "prediction"), _read_csv(truth, "ground-truth")
    if key is None:
        common = [c for c in _KEY_COLUMNS if c in ptab.columns and c in ttab.columns]
        if not common:
            raise InvalidParameterError(f"no item column shared by {pred} ({list(ptab.columns)}) and {truth} "
                                        f"({list(ttab.columns)}); name it with key= (CLI: --key)")
        key = common[0]
    for tab, path in ((ptab, pred), (ttab, truth)):
        if key not in tab.columns:
            raise InvalidParameterError(f"{path} has no item column {key!r}; its columns are {list(tab.columns)}")
        dup = tab[key][tab[key].duplicated()]
        if len(dup):
            raise InvalidParameterError(f"{path}: items listed more than once: {dup.astype(str).tolist()[:5]}")
    tcol = _pick_column(ttab, truth_column, _TRUTH_COLUMNS, "true class", truth)
    pcol = _pick_column(ptab, pred_column, [c for c in _PRED_COLUMNS if c != key], "predicted class", pred)
    ttab = ttab[[key, tcol]].rename(columns={tcol: "truth"})
    ptab = ptab[[key, pcol]].rename(columns={pcol: "prediction"})
    ttab[key], ptab[key] = ttab[key].astype(str), ptab[key].astype(str)
    missing = sorted(set(ttab[key]) - set(ptab[key]))
    unknown = sorted(set(ptab[key]) - set(ttab[key]))
    if missing or unknown:
        parts = ([f"{len(missing)} items have no prediction (e.g. {missing[:3]})"] if missing else []) + \
                ([f"{len(unknown)} predicted items are not in the truth (e.g. {unknown[:3]})"] if unknown else [])
        raise InvalidParameterError(f"{pred} and {truth} do not list the same items: " + "; ".join(parts))
    table = ttab.merge(ptab, on=key).sort_values(key).reset_index(drop=True)
    for col, path in (("truth", truth), ("prediction", pred)):
        if table[col].isna().any():
            raise InvalidParameterError(f"{path}: some items have no class: "
                                        f"{table.loc[table[col].isna(), key].tolist()[:5]}")
    y_true, y_pred = table["truth"].to_numpy(), table["prediction"].to_numpy()
    if y_true.dtype == object or y_pred.dtype == object or y_true.dtype.kind != y_pred.dtype.kind:
        y_true, y_pred = y_true.astype(str), y_pred.astype(str)
    table["correct"] = y_true == y_pred
    scores = classification_scores(y_true, y_pred)
    labels = [str(v) for v in scores.labels.tolist()]
    summary = {"task": "classification", "n_items": len(table), "pred": str(pred), "truth": str(truth),
               **scores.summary(), "labels": labels, "confusion_matrix": scores.confusion,
               "confusion_matrix_normalized": scores.normalized("true"),
               "per_class": scores.per_class.assign(label=labels).to_dict(orient="records"),
               "conventions": {"confusion": "rows = truth, columns = prediction",
                               "zero_division": 0, "balanced_accuracy": "mean recall over classes in the truth"},
               "cytolens_version": _version()}

    def draw(fig, normalized: bool):
        mat = scores.normalized("true") if normalized else scores.confusion
        ax = fig.subplots()
        im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=1 if normalized else max(int(mat.max()), 1))
        n = len(labels)
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
        ax.set(xlabel="predicted", ylabel="true",
               title=f"{'Recall-normalized' if normalized else 'Counts'} — accuracy {scores.accuracy:.3f}, "
                     f"macro-F1 {scores.macro_f1:.3f}")
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    text = f"{mat[i, j]:.2f}" if normalized else str(int(mat[i, j]))
                    ax.text(j, i, text, ha="center", va="center", fontsize=8,
                            color="white" if mat[i, j] > 0.6 * (1 if normalized else mat.max()) else "black")
        fig.colorbar(im, ax=ax)

    result = _finish(paths[:4], table, summary, {"confusion_matrix.png": lambda f: draw(f, False),
                                                 "confusion_matrix_normalized.png": lambda f: draw(f, True)})
    write_table(paths[4], scores.per_class.assign(label=labels), overwrite=True)
    return Evaluation(result.summary, table, paths)


# --------------------------------------------------------------------------- restoration


def evaluate_restoration(pred: str | os.PathLike, truth: str | os.PathLike, output: str | os.PathLike,
                         care: bool = False, data_range: float | None = None, overwrite: bool = False,
                         quiet: bool = True) -> Evaluation:
    """Score restored images against target images (PSNR, SSIM, NRMSE, Pearson r, MSE, MAE).

    Parameters
    ----------
    pred, truth : an image each, or two folders of images paired by name.
    output : folder for ``per_image.csv``, ``summary.json`` and ``scores.png``.
    care : use the CARE convention (percentile-normalized target, affinely fitted prediction);
        without it scores are computed on raw intensities.
    data_range : intensity range for PSNR/SSIM (see :func:`cytolens.metrics.restoration_scores`).
    overwrite, quiet : as in :func:`evaluate_segmentation`.
    """
    from cytolens.io import read_image
    from cytolens.metrics.restoration import restoration_scores

    paths = _prepare_output(output, ["per_image.csv", "summary.json", "scores.png"], overwrite)
    rows = []
    for name, pred_path, truth_path in _progress(pair_files(pred, truth), quiet, "scoring"):
        p, t = read_image(pred_path), read_image(truth_path)
        if p.shape != t.shape:
            raise InvalidParameterError(f"{name}: prediction {pred_path.name} has shape {p.shape} but target "
                                        f"{truth_path.name} has {t.shape}")
        channel_axis = -1 if t.ndim == 3 and t.shape[-1] in (3, 4) else None
        scores = restoration_scores(t, p, care=care, data_range=data_range, channel_axis=channel_axis)
        rows.append({"item": name, "pred_file": pred_path.name, "truth_file": truth_path.name, **scores})
    table = pd.DataFrame(rows)
    keys = ["psnr", "ssim", "nrmse", "pearson_r", "mse", "mae"]
    summary = {"task": "restoration", "n_items": len(table), "pred": str(pred), "truth": str(truth),
               "care": care, "data_range": data_range,
               "means": {k: float(table[k].replace([np.inf], np.nan).mean()) for k in keys},
               "n_identical": int(np.isinf(table["psnr"]).sum()),
               "conventions": {"care": "target percentile-normalized (0.1, 99.9), prediction affinely fitted "
                                       "to it; data_range 1" if care else "raw intensities",
                               "data_range": "target max - min unless given",
                               "ssim": "scikit-image structural_similarity, 7x7 uniform window"},
               "cytolens_version": _version()}

    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        x = np.arange(len(table))
        ax1.bar(x, table["psnr"].replace([np.inf], np.nan))
        ax1.set(title="PSNR (dB)", xlabel="image")
        ax2.bar(x, table["ssim"])
        ax2.set(title="SSIM", xlabel="image", ylim=(min(0.0, float(np.nanmin(table["ssim"]))) if
                                                       table["ssim"].notna().any() else 0, 1))
        if len(table) <= 12:
            for ax in (ax1, ax2):
                ax.set_xticks(x, table["item"], rotation=45, ha="right", fontsize=7)

    return _finish(paths, table, summary, {"scores.png": draw})


# --------------------------------------------------------------------------- tracking


def evaluate_tracking(pred: str | os.PathLike, truth: str | os.PathLike, output: str | os.PathLike,
                      division_tolerance: int = 1, overwrite: bool = False) -> Evaluation:
    """Score a Cell Tracking Challenge result folder against a CTC ground-truth folder.

    Parameters
    ----------
    pred : the ``*_RES`` folder (``mask000.tif``, … and ``res_track.txt``).
    truth : the ``*_GT`` folder (``TRA/`` with ``man_track*.tif`` and ``man_track.txt``;
        ``SEG/`` with ``man_seg*.tif`` for the SEG score, optional).
    output : folder for ``per_frame.csv``, ``summary.json`` and ``per_frame_errors.png``.
    division_tolerance : frames of tolerance for the division scores (BC(i)).
    overwrite : replace existing outputs.
    """
    from cytolens.metrics.tracking import ctc_evaluation

    paths = _prepare_output(output, ["per_frame.csv", "summary.json", "per_frame_errors.png"], overwrite)
    ev = ctc_evaluation(pred, truth, division_tolerance=division_tolerance)
    table = ev.per_frame
    summary = {"task": "tracking", "pred": str(pred), "truth": str(truth), "n_frames": len(table),
               **ev.scores,
               "conventions": {"matching": "reference object R matched to computed C when |R ∩ C| > 0.5 |R|",
                               "aogm_weights": {"NS": 5, "FN": 10, "FP": 1, "ED": 1, "EA": 1.5, "EC": 1},
                               "division": f"BC({division_tolerance}): daughters and parent end within "
                                           f"{division_tolerance} frame(s)"},
               "cytolens_version": _version()}

    def draw(fig):
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        for col, label in (("fn", "missed (FN)"), ("fp", "spurious (FP)"), ("ns", "to split (NS)")):
            ax1.plot(table["frame"], table[col], label=label)
        ax1.set(ylabel="objects", title=f"TRA {ev.scores['TRA']:.3f}  DET {ev.scores['DET']:.3f}  "
                                        f"LNK {ev.scores['LNK']:.3f}")
        ax1.set_ylim(0, max(1, int(table[["fn", "fp", "ns"]].to_numpy().max(initial=0))) * 1.1)
        ax1.legend(fontsize=8)
        seg = table.dropna(subset=["seg"])
        ax2.plot(seg["frame"], seg["seg"], "o-")
        ax2.set(xlabel="frame", ylabel="SEG", ylim=(0, 1.02))

    return _finish(paths, table, summary, {"per_frame_errors.png": draw})
