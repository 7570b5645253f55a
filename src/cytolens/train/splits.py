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
