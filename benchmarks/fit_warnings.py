"""How often `cytolens segment` warns that an image does not suit the model: on images it suits, and on ones it does not.

The thresholds of those warnings (inference.MIN_CERTAINTY, MAX_FILTER_REJECTED, the 3x cap on an
estimated enlargement, the size model's diameter range) were chosen on scratch measurements; this
script measures them on sets no threshold was chosen on, so anyone can check them:

* suited (a warning here is a false alarm): the DSB2018 test split (``training/nuclei/split.json``,
  80 images, every modality) and every 8th frame of the two Cell Tracking Challenge movies
  (``Fluo-N2DH-SIM+/01``, ``Fluo-N2DH-GOWT1/01``, at the movie gamma ``segment_movie`` uses);
* unsuited for a nuclei model (a warning here is a hit): phase-contrast whole cells
  (``usiigaci_phase_contrast_cells``, the first 4 sets), blood-smear crops of single white cells
  (``pbc_blood_cells``, 2 per class, 16 images), and 4 images of smoothed noise.

Each image is segmented as a user would (``cytolens.segment(image, return_info=True)``, diameter
estimated, the object filter on). Per set and model: the share of images with any warning, per
kind, and the range of the network's certainty, of the share the filter removed and of the
estimated enlargement.

Usage: python benchmarks/fit_warnings.py [--models nuclei nuclei_fast] [--quick]
Writes benchmarks/results/fit_warnings.{json,md} (``--quick``: 10 DSB images, 2 per other set,
written with a ``_quick`` suffix).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

import cytolens  # noqa: E402
from cytolens.io import read_image  # noqa: E402
from cytolens.track.pipeline import FLUORESCENCE_MOVIE_GAMMA  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
#: the kind of each warning, told by words its message always holds
KINDS = {"capped": r"accepts from an estimate", "range": r"is outside", "unsure": r"is unsure", "filter": r"object filter"}


def image_sets(quick: bool) -> dict[str, tuple[bool, list[tuple[str, np.ndarray, float]]]]:
    """``{set: (suited, [(name, image, gamma), ...])}``."""
    split = json.loads((ROOT / "training" / "nuclei" / "split.json").read_text())
    dsb = split["test"][:10] if quick else split["test"]
    sets = {"DSB2018 test": (True, [(i, read_image(DATA / "dsb2018_stage1_train" / "images" / f"{i}.tif"), 1.0)
                                    for i in dsb])}
    step = 32 if quick else 8
    for movie in ("Fluo-N2DH-SIM+", "Fluo-N2DH-GOWT1"):
        frames = sorted((DATA / f"ctc_{movie}" / "01").glob("t*.tif"))[::step]
        sets[f"CTC {movie} 01"] = (True, [(f.name, read_image(f), FLUORESCENCE_MOVIE_GAMMA) for f in frames])
    phase = sorted((DATA / "usiigaci_phase_contrast_cells" / "images").glob("*.tif"))[:2 if quick else 4]
    sets["phase-contrast whole cells"] = (False, [(f.name, read_image(f), 1.0) for f in phase])
    blood = [sorted(d.iterdir())[:1 if quick else 2] for d in sorted((DATA / "pbc_blood_cells" / "images").iterdir())]
    blood = [f for files in blood for f in files][:2 if quick else 16]
    sets["blood-smear single cells"] = (False, [(f.name, read_image(f), 1.0) for f in blood])
    rng = np.random.default_rng(0)
    from scipy import ndimage as ndi

    noise = [ndi.gaussian_filter(rng.normal(size=(512, 512)), sigma) for sigma in (1, 2, 4, 8)][:2 if quick else 4]
    sets["smoothed noise"] = (False, [(f"noise_{k}", (n - n.min()) / np.ptp(n), 1.0) for k, n in enumerate(noise)])
    return sets


def kinds_of(messages: list[str]) -> set[str]:
    return {kind for kind, words in KINDS.items() for m in messages if re.search(words, m)}


def measure(model: str, name: str, image: np.ndarray, gamma: float) -> dict:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # they are in info.warnings
        _, info = cytolens.segment(image, model=model, gamma=gamma, return_info=True)
    kinds = kinds_of(info.warnings)
    return {"image": name, "seconds": time.perf_counter() - start, "objects": info.n_objects,
            "diameter": info.diameter, "scale": info.scale, "certainty": info.certainty,
            "filter_rejected": info.filter_rejected, "warned": bool(info.warnings),
            **{f"warn_{kind}": kind in kinds for kind in KINDS}}


def span(values: pd.Series) -> str:
    values = values.dropna()
    return "–" if values.empty else f"{values.min():.2f}–{values.max():.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["nuclei", "nuclei_fast"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sets = image_sets(args.quick)
    rows = []
    for model in args.models:
        for set_name, (suited, images) in sets.items():
            for name, image, gamma in images:
                row = measure(model, name, image, gamma)
                rows.append({"model": model, "set": set_name, "suited": suited, **row})
                print(f"{model} {set_name} {name}: {row['objects']} objects, certainty {row['certainty']}, "
                      f"warned {row['warned']} ({row['seconds']:.1f} s)", flush=True)
    table = pd.DataFrame(rows)
    summary = []
    for (model, set_name), group in table.groupby(["model", "set"], sort=False):
        summary.append({"model": model, "set": set_name, "suited": bool(group.suited.iloc[0]), "images": len(group),
                        "warned": float(group.warned.mean()),
                        **{f"warned_{kind}": int(group[f"warn_{kind}"].sum()) for kind in KINDS},
                        "certainty": span(group.certainty), "filter_rejected": span(group.filter_rejected),
                        "enlargement": span(group.scale)})
    suffix = "_quick" if args.quick else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"fit_warnings{suffix}.json").write_text(json.dumps(
        {"machine": machine(), "summary": summary, "images": table.to_dict("records")}, indent=1, default=str))
    lines = [f"# Fit warnings on suited and unsuited images ({machine()['cpu']}, commit {machine()['commit']})", "",
             "A warning on a suited set is a false alarm; on an unsuited set, a hit. Kinds: capped = the "
             "estimated enlargement hit the 3x cap, range = estimated diameter outside the size model's range, "
             "unsure = certainty below inference.MIN_CERTAINTY, filter = the object filter removed over "
             "inference.MAX_FILTER_REJECTED of the foreground.", "",
             "| model | set | suited | images | share warned | capped | range | unsure | filter | certainty | "
             "filter removed | enlargement |", "|" + " --- |" * 12]
    for s in summary:
        lines.append(f"| {s['model']} | {s['set']} | {'yes' if s['suited'] else 'no'} | {s['images']} | "
                     f"{s['warned']:.2f} | " + " | ".join(str(s[f'warned_{k}']) for k in KINDS) +
                     f" | {s['certainty']} | {s['filter_rejected']} | {s['enlargement']} |")
    (RESULTS / f"fit_warnings{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
