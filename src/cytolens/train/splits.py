"""Deterministic train/validation/test splits, stratified and/or grouped.

Example
-------
>>> ids = [f"img{i}" for i in range(20)]
>>> split = make_split(ids, val_fraction=0.1, test_fraction=0.2, seed=0)
>>> len(split["train"]), len(split["val"]), len(split["test"])
(14, 2, 4)
>>> split == make_split(ids, val_fraction=0.1, test_fraction=0.2, seed=0)
True
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np

from cytolens.errors import InvalidParameterError


def make_split(
    ids: Sequence[str],
    val_fraction: float = 0.1,
    test_fraction: float = 0.12,
    strata: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Split ``ids`` into ``train``, ``val`` (model selection) and ``test`` (reported).

    With ``strata`` each stratum is split separately (at least one item of every
    stratum with ≥ 3 items goes to val and to test when their fraction is > 0).
    With ``groups`` whole groups go to one side, so near-duplicates never leak.
    """
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise InvalidParameterError("image ids must be unique")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InvalidParameterError(
            f"fractions must be in [0, 1) and sum below 1, got val={val_fraction}, test={test_fraction}")
    strata = ["all"] * len(ids) if strata is None else [str(s) for s in strata]
    groups = ids if groups is None else [str(g) for g in groups]
    if len(strata) != len(ids) or len(groups) != len(ids):
        raise InvalidParameterError("strata and groups must have one entry per id")
    rng = np.random.default_rng(seed)
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    members: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for item, stratum, group in zip(ids, strata, groups):
        members[stratum][group].append(item)
    for stratum in sorted(members):
        group_names = sorted(members[stratum])
        rng.shuffle(group_names)
        n = len(group_names)
        n_test = math.ceil(test_fraction * n) if test_fraction > 0 and n >= 3 else 0
        n_val = math.ceil(val_fraction * n) if val_fraction > 0 and n >= 3 else 0
        for position, group in enumerate(group_names):
            side = "test" if position < n_test else "val" if position < n_test + n_val else "train"
            split[side].extend(members[stratum][group])
    return {side: sorted(items) for side, items in split.items()}


def save_split(split: dict[str, list[str]], path: str | Path) -> None:
    Path(path).write_text(json.dumps(split, indent=1) + "\n")


def load_split(path: str | Path) -> dict[str, list[str]]:
    split = json.loads(Path(path).read_text())
    if set(split) - {"train", "val", "test"} or "train" not in split:
        raise InvalidParameterError(f"{path} must hold 'train', 'val', 'test' id lists")
    return {side: list(split.get(side, [])) for side in ("train", "val", "test")}


def add_fixed_sides(split: dict[str, list[str]], fixed: dict[str, list[str]]) -> dict[str, list[str]]:
    """Put the ids of folder-given sides (``{"val": [...], "test": [...]}``) into ``split``.

    Used when validation/test images come from their own folders instead of fractions.
    """
    out = {side: list(split.get(side, [])) for side in ("train", "val", "test")}
    seen = {i: side for side, items in out.items() for i in items}
    for side, items in fixed.items():
        if side not in out:
            raise InvalidParameterError(f"unknown split side {side!r}; use 'train', 'val' or 'test'")
        for item in items:
            if item in seen:
                raise InvalidParameterError(
                    f"image id {item!r} is in both the {seen[item]} and the {side} data; ids (file stems) must be "
                    "unique across folders: rename one of them")
            seen[item] = side
            out[side].append(item)
    return {side: sorted(items) for side, items in out.items()}


def nested_subsets(ids: Sequence[str], fractions: Sequence[float], seed: int = 0) -> list[list[str]]:
    """Growing, nested random subsets of ``ids`` (each one contains the previous), for learning curves.

    Each subset holds ``max(1, round(fraction * len(ids)))`` ids; ``fractions`` must be
    increasing values in (0, 1].

    Examples
    --------
    >>> subsets = nested_subsets([f"i{k}" for k in range(10)], [0.2, 0.5, 1.0])
    >>> [len(s) for s in subsets], set(subsets[0]) <= set(subsets[1])
    ([2, 5, 10], True)
    """
    fractions = [float(f) for f in fractions]
    if not fractions or any(not 0 < f <= 1 for f in fractions) or any(b <= a for a, b in pairwise(fractions)):
        raise InvalidParameterError(f"fractions must be increasing numbers in (0, 1], got {fractions}")
    order = sorted(str(i) for i in ids)
    if not order:
        raise InvalidParameterError("there are no training images to subsample")
    np.random.default_rng(seed).shuffle(order)
    return [sorted(order[: max(1, round(f * len(order)))]) for f in fractions]


def annotated_pairs(images: Path, annotations: Path, images_setting: str = "data.images",
                    annotations_setting: str = "data.labels") -> dict[str, tuple[Path, Path]]:
    """``{stem: (image, annotation)}`` for the files of two folders that share a stem.

    Files without a partner are left out with a warning that names them (a typo would
    otherwise drop an image silently).
    """
    import warnings

    from cytolens.io import list_images

    for name, folder in ((images_setting, images), (annotations_setting, annotations)):
        if not Path(folder).is_dir():
            raise InvalidParameterError(f"{name}: folder not found: {folder}")
    image_files = {p.stem: p for p in list_images(images)}
    annotation_files = {p.stem: p for p in list_images(annotations)}
    unmatched = sorted(set(image_files) ^ set(annotation_files))
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        warnings.warn(f"{len(unmatched)} file(s) in {images_setting} or {annotations_setting} have no partner of "
                      f"the same name and are left out: {shown}", UserWarning, stacklevel=3)
    return {i: (image_files[i], annotation_files[i]) for i in sorted(set(image_files) & set(annotation_files))}


def strata_for(data, ids: list[str]) -> tuple[list[str] | None, list[str] | None]:
    """The stratum and group of each id from a data config's ``strata_csv`` (None where not asked for)."""
    if data.strata_csv is None:
        return None, None
    import pandas as pd

    table = pd.read_csv(data.strata_csv, dtype=str)
    for column in (data.id_column, data.stratify_column, data.group_column):
        if column is not None and column not in table.columns:
            raise InvalidParameterError(f"data.strata_csv {data.strata_csv} has no column {column!r} "
                                        f"(columns: {', '.join(table.columns)})")
    table = table.set_index(data.id_column)
    missing = [i for i in ids if i not in table.index]
    if missing:
        raise InvalidParameterError(f"{len(missing)} image id(s) are missing from data.strata_csv column "
                                    f"{data.id_column!r}, e.g. {missing[:3]}")
    strata = [table.loc[i, data.stratify_column] for i in ids] if data.stratify_column else None
    groups = [table.loc[i, data.group_column] for i in ids] if data.group_column else None
    return strata, groups


def make_data_split(config) -> tuple[dict[str, list[str]], dict[str, tuple], dict[str, str]]:
    """The train/val/test split of a config's data, for any task: from ``split_file`` if it exists, else
    made (stratified, grouped, or with fixed ``val_``/``test_`` folders) and saved there.

    Returns the split, ``{id: (image, annotation)}`` and ``{id: stratum}``.
    """
    data = config.data
    kind = data.ANNOTATION
    files = annotated_pairs(data.images, data.annotations(), "data.images", f"data.{kind}")
    if not files:
        raise InvalidParameterError(f"no image in {data.images} has a {kind} file of the same name in "
                                    f"{data.annotations()}")
    pool = sorted(files)
    fixed: dict[str, list[str]] = {}
    for side in ("val", "test"):
        folder = getattr(data, f"{side}_images")
        if folder is not None:
            side_files = annotated_pairs(folder, data.annotations(side), f"data.{side}_images", f"data.{side}_{kind}")
            if not side_files:
                raise InvalidParameterError(f"no image in data.{side}_images ({folder}) has a {kind} file of the "
                                            f"same name in data.{side}_{kind}")
            clash = sorted(set(side_files) & set(files))
            if clash:
                raise InvalidParameterError(f"image id(s) {clash[:3]} are in data.images and data.{side}_images; "
                                            "ids (file stems) must be unique across folders")
            files.update(side_files)
            fixed[side] = sorted(side_files)
    strata, groups = strata_for(data, pool)
    if data.split_file is not None and Path(data.split_file).is_file():
        split = load_split(data.split_file)
        unknown = sorted(set(split["train"] + split["val"] + split["test"]) - set(files))
        if unknown:
            raise InvalidParameterError(
                f"data.split_file {data.split_file} lists {len(unknown)} id(s) with no image/{kind} pair, e.g. "
                f"{unknown[:3]}; fix the data folders or delete the split file to make a new split")
    else:
        split = make_split(pool, 0 if "val" in fixed else data.val_fraction,
                           0 if "test" in fixed else data.test_fraction, strata, groups, config.seed)
        split = add_fixed_sides(split, fixed)
        if data.split_file is not None:
            save_split(split, data.split_file)
    stratum_of = dict(zip(pool, strata)) if strata else {}
    return split, files, stratum_of
