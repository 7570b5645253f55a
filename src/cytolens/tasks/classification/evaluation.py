"""Every evaluation of a classifier: per-class precision/recall/F1, balanced accuracy, confusion matrix (CSV + PNG).

Never accuracy alone: with rare classes a model that never predicts them still scores
a high accuracy; balanced accuracy (mean recall) and macro-F1 do not hide that.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cytolens.metrics.classification import ClassificationScores, classification_scores


def score(truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> ClassificationScores:
    """The scores of one prediction, classes in model order."""
    return classification_scores(np.asarray(truth, dtype=str), np.asarray(predicted, dtype=str),
                                 np.asarray(classes, dtype=str))


def plot_confusion(scores: ClassificationScores, path: str | Path, title: str = "") -> Path:
    """The confusion matrix as a PNG: counts in each cell, colour by row share (recall)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(c) for c in scores.labels]
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.6 + 0.55 * n, 1.2 + 0.5 * n))
    ax.imshow(scores.normalized("true"), cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            count = int(scores.confusion[i, j])
            share = scores.normalized("true")[i, j]
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if share > 0.5 else "black")
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true")
    summary = (f"accuracy {scores.accuracy:.3f}, balanced {scores.balanced_accuracy:.3f}, "
               f"macro-F1 {scores.macro_f1:.3f}")
    ax.set_title(f"{title}\n{summary}" if title else summary, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_evaluation(scores: ClassificationScores, folder: str | Path, prefix: str = "", title: str = "") -> dict:
    """Write ``<prefix>per_class.csv``, ``<prefix>confusion.csv`` and ``<prefix>confusion.png`` to ``folder``."""
    from cytolens.io import make_folder

    folder = make_folder(folder)
    per_class = scores.per_class.copy()
    per_class.to_csv(folder / f"{prefix}per_class.csv", index=False, float_format="%.4f")
    labels = [str(c) for c in scores.labels]
    confusion = pd.DataFrame(scores.confusion, index=pd.Index(labels, name="true \\ predicted"), columns=labels)
    confusion.to_csv(folder / f"{prefix}confusion.csv")
    plot_confusion(scores, folder / f"{prefix}confusion.png", title)
    return scores.summary()
