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
