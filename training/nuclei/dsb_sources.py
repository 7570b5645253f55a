"""Group the DSB2018 stage1_train images by source, for leave-one-group-out evaluation.

DSB2018 pooled images from many experiments; its 80-image test split shares sources with
training, so it overstates how a model does on a new lab's images. The images' sources are
not published, but their types are distinct (Caicedo et al. 2019): image size, modality
(fluorescence, bright-field, H&E-like stain) and, within a size, nucleus size, density and
brightness. This script recovers the groups reproducibly:

1. strata: modality × image size; strata under 40 images are pooled per modality
   ("fluorescence, other sizes");
2. within a stratum of 40 or more images, Ward clustering of standardized per-image features
   (log median nucleus diameter, log nucleus count, mean foreground and background intensity,
   foreground intensity spread, and for colour images the foreground's mean R, G, B), with the
   number of clusters (2 to 4) that maximizes the silhouette, kept only when the silhouette
   is >= 0.3 (else one group).

Writes training/nuclei/dsb_sources.csv (id, group and the features) and dsb_sources.md
(one row per group). Usage: python training/nuclei/dsb_sources.py [--data ../shared/data/dsb2018_stage1_train]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import silhouette_score

from cytolens.io import read_image

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1].parent / "shared" / "data" / "dsb2018_stage1_train"
MODALITY = {"gray_darkbg(fluorescence-like)": "fluorescence", "gray_brightbg(brightfield-like)": "brightfield",
            "color_brightbg(stained/H&E-like)": "stained"}
MIN_STRATUM, MIN_SILHOUETTE, MAX_CLUSTERS = 40, 0.3, 4


def image_features(data: Path, image_id: str) -> dict:
    """Per-image features of the source: nucleus size and count, intensities, colour (0-1 scale)."""
    image = read_image(data / "images" / f"{image_id}.tif")[..., :3].astype(float) / 255
    labels = read_image(data / "labels_lopuhin_fixed" / f"{image_id}.tif")
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    foreground, gray = labels > 0, image.mean(axis=-1)
    return {"id": image_id, "diameter": float(np.median(2 * np.sqrt(areas / np.pi))), "objects": int(len(areas)),
            "fg": float(gray[foreground].mean()), "bg": float(gray[~foreground].mean()),
            "fg_std": float(gray[foreground].std()),
            **{c: float(image[..., k][foreground].mean()) for k, c in enumerate("rgb")}}


def cluster(stratum: pd.DataFrame, colour: bool) -> np.ndarray:
    """Cluster index per image of one stratum (all 0 when no clustering is clear enough)."""
    columns = ["diameter", "objects", "fg", "bg", "fg_std"] + (["r", "g", "b"] if colour else [])
    x = stratum[columns].to_numpy(float)
    x[:, :2] = np.log(x[:, :2])
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    best, best_score = np.zeros(len(x), int), MIN_SILHOUETTE
    for k in range(2, MAX_CLUSTERS + 1):
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x)
        score = silhouette_score(x, labels)
        if score >= best_score:
            best, best_score = labels, score
    # name clusters by increasing median nucleus diameter, so names do not depend on the algorithm's order
    order = stratum.assign(c=best).groupby("c")["diameter"].median().sort_values().index
    return np.array([list(order).index(c) for c in best])


def source_groups(data: Path) -> pd.DataFrame:
    index = pd.read_csv(data / "index.csv")
    fixed = pd.read_csv(data / "index_lopuhin_fixed.csv")[["id"]]  # the images with community-fixed labels
    table = fixed.merge(index[["id", "height", "width", "modality"]], on="id")
    table["modality"] = table["modality"].map(MODALITY)
    table = table.merge(pd.DataFrame([image_features(data, i) for i in table["id"]]), on="id")
    table["stratum"] = table["modality"] + " " + table["height"].astype(str) + "x" + table["width"].astype(str)
    small = table.groupby("stratum")["id"].transform("size") < MIN_STRATUM
    table.loc[small, "stratum"] = table.loc[small, "modality"] + " other sizes"
    table["group"] = table["stratum"]
    for name, stratum in table.groupby("stratum"):
        if len(stratum) >= MIN_STRATUM:
            clusters = cluster(stratum, colour=stratum["modality"].iloc[0] == "stained")
            if clusters.max() > 0:
                table.loc[stratum.index, "group"] = [f"{name} {'abcd'[c]}" for c in clusters]
    return table.sort_values(["group", "id"]).reset_index(drop=True)


def summary(table: pd.DataFrame, split: dict) -> str:
    side = {i: k for k, ids in split.items() for i in ids}
    table = table.assign(side=table["id"].map(side).fillna("none"))
    lines = ["# DSB2018 stage1_train source groups (training/nuclei/dsb_sources.py)", "",
             "Images with community-fixed labels (664), grouped by modality × size and clustered within large strata "
             "(see the script). Sides: training/nuclei/split.json.", "",
             "| group | images | train | val | test | median nucleus diameter (px) | median nuclei per image | "
             "foreground / background intensity |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for group, rows in table.groupby("group"):
        counts = rows["side"].value_counts()
        lines.append(f"| {group} | {len(rows)} | {counts.get('train', 0)} | {counts.get('val', 0)} | "
                     f"{counts.get('test', 0)} | {rows['diameter'].median():.1f} | {rows['objects'].median():.0f} | "
                     f"{rows['fg'].median():.2f} / {rows['bg'].median():.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    table = source_groups(args.data)
    table.round(4).to_csv(HERE / "dsb_sources.csv", index=False)
    (HERE / "dsb_sources.md").write_text(summary(table, json.loads((HERE / "split.json").read_text())))
    print((HERE / "dsb_sources.md").read_text())


if __name__ == "__main__":
    main()
