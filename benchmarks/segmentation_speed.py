"""Speed of the whole ``cytolens.segment`` call and its peak memory on a huge image.

* Megapixels per second of ``cytolens.segment(image, model)`` (bundled ``nuclei`` and the
  narrower ``nuclei_fast``) on synthetic 512² and 2048²
  fluorescence images (file I/O excluded), with the diameter given and estimated,
  next to a classical baseline in the same run (Otsu threshold + distance-transform
  watershed, scikit-image) as a ratio: absolute times on shared machines are noisy. The
  object filter's share is 1 − (time with ``filter_objects=False``) / (time with it), diameter given.
  The same call with ``precision="bfloat16"`` (mixed precision) gives the bfloat16 speed-up, and
  the AP@0.5 of its labels against the float32 labels says how much the result moves.
  The batch-norm folding speed-up is the time of the same call (diameter given) with the
  network as trained, batch-norms and all, over the time with them folded into the
  convolutions, which is what ``segment`` runs (``ModelPackage.inference_network``).
* Peak resident memory (RSS) of a fresh process segmenting an 8000×8000 image
  (diameter given), measured by the OS (``ru_maxrss``), against the < 4 GB budget.

Usage: python benchmarks/segmentation_speed.py [--repeats 3] [--skip-huge] [--models nuclei nuclei_fast]
Writes benchmarks/results/segmentation_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

import cytolens  # noqa: E402
from cytolens.data.synthetic import synthetic_nuclei  # noqa: E402
from cytolens.metrics import match  # noqa: E402
from cytolens.models import load  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DIAMETER = 20.0  # synthetic nuclei are 12-32 px across


def with_batchnorms(package):
    """The package segmenting with its network as trained (batch-norms not folded), for the comparison."""
    unfolded = dataclasses.replace(package)
    unfolded.__dict__["inference_network"] = package.network  # fills the cached property before its first use
    return unfolded


def speed_image(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic fluorescence image (and its true labels) the speed benchmarks time: 80 nuclei per 512²."""
    return synthetic_nuclei(shape=shape, n_nuclei=int(80 * shape[0] * shape[1] / 512**2), seed=shape[1])


def classical(image: np.ndarray) -> np.ndarray:
    """Otsu + distance transform + h-maxima-free peak markers + watershed (the usual baseline)."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    smooth = gaussian(image.astype(np.float32), 1)
    mask = smooth > threshold_otsu(smooth)
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=int(DIAMETER / 3), labels=ndi.label(mask)[0])
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=mask)


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def huge_rss(size: int, model: str = "nuclei") -> dict:
    """Segment a size×size image in a fresh process and return its peak RSS."""
    tile, _ = synthetic_nuclei(shape=(1000, 1000), n_nuclei=600, seed=3)
    image = np.tile(tile, (size // 1000, size // 1000))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "huge.npy"
        np.save(path, image)
        code = (
            "import numpy as np, resource, time, cytolens\n"
            f"image = np.load({str(path)!r})\n"
            "start = time.perf_counter()\n"
            f"labels = cytolens.segment(image, {model!r}, diameter={DIAMETER})\n"
            "seconds = time.perf_counter() - start\n"
            "print(int(labels.max()), seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    objects, seconds, rss_kb = out.split()
    return {"model": model, "shape": [size, size], "dtype": str(image.dtype), "objects": int(objects),
            "seconds": float(seconds),
            "peak_rss_gb": int(rss_kb) / 1024**2, "input_gb": image.nbytes / 1024**3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-huge", action="store_true")
    parser.add_argument("--models", nargs="+", default=["nuclei", "nuclei_fast"],
                        help="bundled models to time (the 8000² memory test uses the first)")
    args = parser.parse_args()
    packages = {name: load(name) for name in args.models}
    report = {"machine": machine(), "sizes": {}}
    for side in (512, 2048):
        image, _ = speed_image((side, side))
        megapixels = side * side / 1e6
        baseline = best_time(lambda: classical(image), args.repeats)
        entry = {"megapixels": megapixels, "classical_watershed_mpx_per_s": megapixels / baseline, "models": {}}
        for name, package in packages.items():
            cytolens.segment(image[:256, :256], package, diameter=DIAMETER)  # warm-up
            given = best_time(lambda: cytolens.segment(image, package, diameter=DIAMETER), args.repeats)
            estimated = best_time(lambda: cytolens.segment(image, package), args.repeats)
            unfiltered = best_time(lambda: cytolens.segment(image, package, diameter=DIAMETER, filter_objects=False),
                                   args.repeats)
            as_trained = with_batchnorms(package)
            unfolded = best_time(lambda: cytolens.segment(image, as_trained, diameter=DIAMETER), args.repeats)
            mixed = best_time(lambda: cytolens.segment(image, package, diameter=DIAMETER, precision="bfloat16"),
                              args.repeats)
            agreement = match(cytolens.segment(image, package, diameter=DIAMETER).astype(np.int64),
                              cytolens.segment(image, package, diameter=DIAMETER, precision="bfloat16").astype(np.int64),
                              0.5).average_precision
            entry["models"][name] = {"diameter_given_mpx_per_s": megapixels / given,
                                     "batchnorm_folding_speedup": unfolded / given,
                                     "bfloat16_given_mpx_per_s": megapixels / mixed,
                                     "bfloat16_speedup": given / mixed,
                                     "bfloat16_vs_float32_ap50": agreement,
                                     "diameter_estimated_mpx_per_s": megapixels / estimated,
                                     "slowdown_vs_classical_given": given / baseline,
                                     "object_filter_share_given": 1 - unfiltered / given}
        report["sizes"][str(side)] = entry
        print(side, json.dumps(entry), flush=True)
    if not args.skip_huge:
        report["huge"] = huge_rss(8000, args.models[0])
        print("huge", json.dumps(report["huge"]), flush=True)
    report["rss_benchmark_process_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    (RESULTS / "segmentation_speed.json").write_text(json.dumps(report, indent=1) + "\n")
    m = report["machine"]
    lines = ["# Segmentation speed", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), no GPU; "
             f"commit {m['commit']}. Best of {args.repeats} runs; synthetic fluorescence nuclei; "
             "file I/O excluded. bfloat16: the same call in mixed precision, diameter given "
             f"(this CPU {'has' if m.get('cpu_bfloat16') else 'has no'} native bfloat16); "
             "agreement = AP@0.5 of its labels against the float32 labels.", "",
             "| image | model | diameter given (Mpx/s) | diameter estimated (Mpx/s) | "
             "classical Otsu+watershed (Mpx/s) | cytolens time / classical time | object filter's share | "
             "batch-norm folding speed-up | bfloat16 (Mpx/s) | bfloat16 speed-up | bfloat16 agreement |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for side, entry in report["sizes"].items():
        for name, s in entry["models"].items():
            lines.append(f"| {side}² | {name} | {s['diameter_given_mpx_per_s']:.2f} | "
                         f"{s['diameter_estimated_mpx_per_s']:.2f} | {entry['classical_watershed_mpx_per_s']:.2f} | "
                         f"{s['slowdown_vs_classical_given']:.1f}× | {s['object_filter_share_given']:.0%} | "
                         f"{s['batchnorm_folding_speedup']:.2f}× | {s['bfloat16_given_mpx_per_s']:.2f} | "
                         f"{s['bfloat16_speedup']:.2f}× | "
                         f"{s['bfloat16_vs_float32_ap50']:.3f} |")
    if "huge" in report:
        h = report["huge"]
        lines += ["", f"8000×8000 {h['dtype']} image, model {h['model']} ({h['objects']} objects, {h['seconds']:.0f} s): "
                      f"peak RSS {h['peak_rss_gb']:.2f} GB (budget < 4 GB)."]
    (RESULTS / "segmentation_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
