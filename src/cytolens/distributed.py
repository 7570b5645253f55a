"""Dask execution: many files in parallel, and one image larger than memory segmented block by block.

Both run on ``dask.distributed`` (a ``LocalCluster`` on this machine by default, or any scheduler
address); cytolens never runs a scheduler of its own.

* :func:`segment_files_on_dask` — ``cytolens segment --dask ADDRESS FILES...``: one task per file,
  each calling :func:`cytolens.segment_files.segment_file`, so the files are the same as without Dask.
* :func:`segment_large_image` — one big 2D image (Zarr / OME-Zarr, or a TIFF read lazily) cut into
  blocks of ``block_size`` with ``overlap`` pixels of context on each side. Each block is segmented
  with the same, fixed diameter; an object belongs to the block whose core holds its centroid, and is
  kept whole from that block's padded window (objects cut by a window edge that is not the image's
  edge are left to the block that sees them whole). So a cell is neither cut at a block border nor
  counted twice, provided ``overlap`` is larger than the largest object. Every block is normalized
  alike: with the model's percentiles of the whole image (from the same strided sample an in-memory
  run takes, read one block at a time), not of its own pixels; and ``block_size`` and ``overlap`` are
  rounded up to multiples of the network's input divisor (``2 ** depth``, 16 for the bundled models),
  so each block's network sees the pixels on the same pooling grid as a run on the whole image (a
  U-Net's output moves when its input is shifted by a fraction of that grid). The label image is written
  as OME-Zarr (NGFF 0.4, one scale, chunks = blocks) and the per-object table (measured on each
  object's whole mask, coordinates in the full image) as ``<name>_cells.csv`` beside it. A worker
  holds one padded block at a time: its memory is bounded by the block size, not the image size.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cytolens.errors import CytolensError, ImageReadError, InvalidImageError, InvalidParameterError, OutputExistsError
from cytolens.segment_files import SegmentSettings

if TYPE_CHECKING:
    from cytolens.tasks.segmentation.inference import SegmentationInfo

__all__ = ["LargeImageResult", "dask_client", "image_intensity_range", "segment_files_on_dask", "segment_large_image",
           "strided_sample"]


def local_cluster(n_workers: int):
    """A ``distributed.LocalCluster`` of ``n_workers`` processes with one thread each, no dashboard, and its
    scheduler's HTTP endpoint on a free loopback port (not 8787: two clusters on one machine do not collide)."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})


@contextlib.contextmanager
def dask_client(address: Any = "local") -> Iterator[Any]:
    """A ``distributed.Client``: ``"local"`` / ``"local:N"`` starts a LocalCluster (N worker processes, one
    thread each) for the block and closes it after; any other string is a scheduler address; a Client passes
    through."""
    try:
        from distributed import Client
    except ImportError:
        raise CytolensError("Dask is not installed; pip install 'cytolens[dask]'") from None
    if not isinstance(address, str):
        yield address
        return
    if address == "local" or address.startswith("local:"):
        count = address.partition(":")[2] or str(min(os.cpu_count() or 1, 4))
        if not count.isdigit() or int(count) < 1:
            raise InvalidParameterError(f"--dask {address!r}: expected local, local:N (N workers) or an address")
        with local_cluster(int(count)) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout="10s")
    except OSError as exc:
        raise CytolensError(f"cannot reach the Dask scheduler at {address} ({exc}); check the address, or use "
                            "--dask local for a cluster on this machine") from None
    with client:
        yield client


def _segment_one(image_path: str, output: str, model: str, settings: SegmentSettings,
                 overwrite: bool) -> tuple[SegmentationInfo | None, CytolensError | None]:
    """One file on a worker: what :func:`segment_file` returns, or the image's error."""
    from cytolens.segment_files import prepare, segment_file

    package, settings = prepare(model, settings)
    try:
        with warnings.catch_warnings():  # the info's warnings carry them back
            warnings.simplefilter("ignore")
            return segment_file(Path(image_path), Path(output), package, settings, overwrite=overwrite), None
    except (ImageReadError, InvalidImageError) as exc:
        return None, exc


def segment_files_on_dask(images: list[Path], output: Path, model: str | os.PathLike, settings: SegmentSettings, *,
                          address: Any = "local", overwrite: bool = False
                          ) -> Iterator[tuple[Path, SegmentationInfo | None, CytolensError | None]]:
    """Segment each file on a Dask worker; yield ``(path, info, None)`` or ``(path, None, error)`` in input order.

    The model is given by name or path (each worker loads it once); ``output`` must be a folder
    every worker can write to (on a LocalCluster, this machine's).
    """
    with dask_client(address) as client:
        futures = [client.submit(_segment_one, str(path), str(output), str(model), settings, overwrite,
                                 key=f"cytolens-segment-{index}-{Path(path).name}", pure=False)
                   for index, path in enumerate(images)]
        for path, future in zip(images, futures):
            info, error = future.result()
            yield Path(path), info, error


# ---------------------------------------------------------------- one image larger than memory

@dataclass(frozen=True)
class LargeImageResult:
    """What :func:`segment_large_image` wrote and measured."""

    labels: Path
    table: Path
    n_objects: int
    diameter: float
    intensity_range: tuple[float, float] | None
    blocks: list[dict]


def open_lazy(source: str | os.PathLike):
    """A sliceable view of a big 2D image that reads only what is sliced: a Zarr array, the first scale of an
    OME-Zarr, or a TIFF (through tifffile's Zarr store, or a memory map)."""
    import zarr

    source = Path(source)
    if not source.exists():
        raise ImageReadError(f"file not found: {source}")
    if source.is_dir():  # Zarr / OME-Zarr
        node = zarr.open(str(source), mode="r")
        if isinstance(node, zarr.Group):
            node = node.get("0")
            if node is None:
                raise ImageReadError(f"{source} is a Zarr group without an array '0'; point at the array itself")
        return node
    import tifffile

    try:
        return zarr.open(tifffile.imread(source, aszarr=True), mode="r")
    except Exception:  # noqa: BLE001  (an old tifffile / zarr pair): a memory map works for uncompressed TIFFs
        try:
            return tifffile.memmap(source, mode="r")
        except Exception as exc:  # noqa: BLE001  (tifffile raises many kinds)
            raise ImageReadError(f"{source}: cannot read lazily ({exc}); write it as Zarr or an uncompressed "
                                 "TIFF") from None


def strided_sample(array, step: int, block_size: int = 2048) -> np.ndarray:
    """``array[::step, ::step]`` of a lazy 2D (or ``(Y, X, C)``) array, read one block at a time.

    Memory: one ``block_size`` block plus the sample, whatever the array's size.

    >>> image = np.arange(70 * 50).reshape(70, 50)
    >>> bool((strided_sample(image, 3, block_size=16) == image[::3, ::3]).all())
    True
    """
    height, width = array.shape[:2]
    rows = []
    for y in range(0, height, block_size):
        pieces = [np.asarray(array[y:y + block_size, x:x + block_size])[(-y) % step::step, (-x) % step::step]
                  for x in range(0, width, block_size)]
        rows.append(np.concatenate(pieces, axis=1))
    return np.concatenate(rows, axis=0)


def image_intensity_range(source: str | os.PathLike, normalization: dict | None = None, channel: int | None = None,
                          block_size: int = 2048) -> tuple[float, float] | None:
    """The intensities a model's normalization (its ``"normalization"`` metadata) maps to 0 and 1 over a whole lazy
    image: the percentiles :meth:`~cytolens.preprocess.PercentileNormalizer.statistics` would take of the image
    in memory (the same strided sample), read one block at a time. None for a constant image."""
    from cytolens.preprocess import PercentileNormalizer, select_channel
    from cytolens.tasks.segmentation.inference import as_yxc

    array = open_lazy(source)
    sample = strided_sample(array, PercentileNormalizer.sample_step(tuple(array.shape)), block_size)
    if channel is not None:
        sample = select_channel(sample, channel)
    sample = as_yxc(sample, allow_constant=True).astype(np.float32)
    low, high = PercentileNormalizer.from_meta(normalization).sample_statistics(sample)
    return (low, high) if low < high else None


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _estimate_diameter(source: str, model: str, settings: SegmentSettings, window: tuple,
                       intensity_range: tuple[float, float] | None) -> float | None:
    from cytolens.api import segment

    image = np.asarray(open_lazy(source)[window[0]:window[1], window[2]:window[3]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = segment(image, model, channel=settings.channel, return_info=True, tile_size=settings.tile_size,
                          gamma=settings.gamma, filter_objects=settings.filter_objects,
                          precision=settings.precision, intensity_range=intensity_range,
                          **settings.postprocess_params())
    return info.diameter


def owned_objects(labels: np.ndarray, core: tuple[int, int, int, int], open_edges: tuple[bool, bool, bool, bool]
                  ) -> np.ndarray:
    """The objects of a padded block's ``labels`` that this block keeps, numbered 1..n.

    ``core`` = (y0, y1, x0, x1) in the block's coordinates: an object is kept when its centroid lies in
    ``[y0, y1) x [x0, x1)`` and it touches no window edge flagged in ``open_edges`` (top, bottom, left,
    right: edges inside the image, where the object may be cut).

    >>> labels = np.zeros((6, 6), int); labels[0:2, 2:4] = 1; labels[2:4, 2:4] = 2; labels[4:6, 4:6] = 3
    >>> kept = owned_objects(labels, (1, 4, 0, 6), (True, False, False, False))  # 1 is cut, 3's centroid is out
    >>> np.unique(kept).tolist(), bool((kept == 1).sum() == (labels == 2).sum())
    ([0, 1], True)
    """
    from scipy import ndimage
    from skimage.segmentation import relabel_sequential

    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return np.zeros_like(labels)
    centroids = np.asarray(ndimage.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)
    keep = ((centroids[:, 0] >= core[0]) & (centroids[:, 0] < core[1])
            & (centroids[:, 1] >= core[2]) & (centroids[:, 1] < core[3]))
    cut = set()
    for is_open, edge in zip(open_edges, (labels[0], labels[-1], labels[:, 0], labels[:, -1])):
        if is_open:
            cut.update(np.unique(edge).tolist())
    kept = np.array([i for i, k in zip(ids.tolist(), keep) if k and i not in cut], dtype=labels.dtype)
    owned = np.where(np.isin(labels, kept), labels, 0)
    return relabel_sequential(owned)[0]


def _segment_block(source: str, model: str, settings: SegmentSettings, diameter: float,
                   intensity_range: tuple[float, float] | None, window: tuple, core: tuple, shape: tuple,
                   scratch: str) -> dict:
    """Phase 1 on a worker: segment a padded block, keep the objects it owns, store them, measure them."""
    import zarr

    from cytolens.api import measure, segment

    y0, y1, x0, x1 = window
    image = np.asarray(open_lazy(source)[y0:y1, x0:x1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = segment(image, model, diameter=diameter, channel=settings.channel, tile_size=settings.tile_size,
                         augment=settings.augment, gamma=settings.gamma, filter_objects=settings.filter_objects,
                         precision=settings.precision, intensity_range=intensity_range,
                         **settings.postprocess_params())
    local_core = (core[0] - y0, core[1] - y0, core[2] - x0, core[3] - x0)
    open_edges = (y0 > 0, y1 < shape[0], x0 > 0, x1 < shape[1])
    owned = owned_objects(labels, local_core, open_edges).astype(np.uint32)
    store = zarr.create_array(store=f"{scratch}/b_{core[0]}_{core[2]}", shape=owned.shape, dtype="uint32",
                              chunks=owned.shape, overwrite=True)
    store[...] = owned
    table = measure(owned, image) if owned.max() else None
    if table is not None:
        for column, offset in (("centroid_y", y0), ("centroid_x", x0), ("bbox_min_y", y0), ("bbox_max_y", y0),
                               ("bbox_min_x", x0), ("bbox_max_x", x0)):
            table[column] += offset
    return {"core": core, "window": window, "n": int(owned.max()), "table": table, "pid": os.getpid(),
            "peak_rss_mb": _peak_rss_mb(), "block_pixels": int(image.shape[0] * image.shape[1])}


def _paint_core(core: tuple, pieces: list[tuple[tuple, tuple, int]], scratch: str, output: str) -> int:
    """Phase 2 on a worker: the final labels of one core block from the owned objects of the blocks around it.

    Returns how many pixels two blocks' objects both claimed (the first claim is kept).
    """
    import zarr

    canvas = np.zeros((core[1] - core[0], core[3] - core[2]), dtype=np.uint32)
    conflicts = 0
    for other_core, window, offset in pieces:
        ys, ye = max(core[0], window[0]), min(core[1], window[1])
        xs, xe = max(core[2], window[2]), min(core[3], window[3])
        if ys >= ye or xs >= xe:
            continue
        part = zarr.open_array(f"{scratch}/b_{other_core[0]}_{other_core[2]}", mode="r")[
            ys - window[0]:ye - window[0], xs - window[2]:xe - window[2]]
        target = canvas[ys - core[0]:ye - core[0], xs - core[2]:xe - core[2]]
        claim = part > 0
        conflicts += int(np.count_nonzero(claim & (target > 0)))
        free = claim & (target == 0)
        target[free] = part[free] + offset
    zarr.open_array(f"{output}/0", mode="r+")[core[0]:core[1], core[2]:core[3]] = canvas
    return conflicts


def _write_ome_zarr_header(output: Path, shape: tuple[int, int], block_size: int, name: str) -> None:
    import zarr

    group = zarr.open_group(str(output), mode="w", zarr_format=2)
    group.create_array("0", shape=shape, chunks=(min(block_size, shape[0]), min(block_size, shape[1])),
                       dtype="uint32", fill_value=0)
    group.attrs["multiscales"] = [{"version": "0.4", "name": name,
                                   "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
                                   "datasets": [{"path": "0", "coordinateTransformations": [
                                       {"type": "scale", "scale": [1.0, 1.0]}]}]}]
    group.attrs["image-label"] = {"version": "0.4", "source": {"image": "../../"}}


def segment_large_image(source: str | os.PathLike, output: str | os.PathLike, model: str | os.PathLike = "nuclei",
                        settings: SegmentSettings | None = None, *, block_size: int = 2048, overlap: int = 128,
                        address: Any = "local", overwrite: bool = False,
                        intensity_range: tuple[float, float] | None = None,
                        progress: Callable[[int, int], None] | None = None) -> LargeImageResult:
    """Segment one big 2D image block-wise on Dask and write ``output`` (``.ome.zarr``) + ``<stem>_cells.csv``.

    Parameters
    ----------
    source : path
        ``(Y, X)`` or ``(Y, X, C)`` image: a Zarr array, an OME-Zarr (its scale ``0``) or a TIFF.
    output : path
        The OME-Zarr folder to write the label image to (uint32, 0 = background, objects 1..N).
    settings : SegmentSettings
        As for ``cytolens segment``; ``diameter`` None estimates it once, on the central block, and
        uses that one diameter for every block (a per-block estimate would vary across borders).
    block_size, overlap : int
        Core block side and context on each side; ``overlap`` must exceed the largest object. Both
        are rounded up to multiples of the network's input divisor (16 for the bundled models).
    address : str or Client
        ``"local"``, ``"local:N"``, a scheduler address, or a ``distributed.Client``.
    intensity_range : (float, float), optional
        The intensities every block is normalized to 0 and 1 with; None takes the model's
        percentiles of the whole image (:func:`image_intensity_range`, one task reading it block by
        block), so each block is normalized as the whole image would be in memory.
    progress : callable, optional
        Called as ``progress(done, total)`` each time a block has been segmented.
    """
    import pandas as pd

    from cytolens.io import write_table
    from cytolens.io.results import file_stem
    from cytolens.tasks.segmentation.inference import check_intensity_range

    settings = settings or SegmentSettings()
    source, output = Path(source), Path(output)
    if block_size < 64 or overlap < 0 or overlap >= block_size:
        raise InvalidParameterError(f"need block_size >= 64 and 0 <= overlap < block_size; got {block_size}, "
                                    f"{overlap}")
    intensity_range = check_intensity_range(intensity_range)
    table_path = output.with_name(f"{file_stem(output.with_suffix(''))}_cells.csv")
    if not overwrite and (output.exists() or table_path.exists()):
        raise OutputExistsError(f"{output if output.exists() else table_path} exists; add --overwrite to replace it")
    shape = tuple(open_lazy(source).shape)
    if len(shape) not in (2, 3):
        raise InvalidImageError(f"{source}: expected a (Y, X) or (Y, X, C) image, got shape {shape}")
    height, width = shape[:2]
    scratch = output.with_name(output.name + ".blocks")
    with dask_client(address) as client:
        from cytolens.segment_files import prepare

        package, settings = prepare(model, settings)  # a bad setting fails here, before any block runs
        divisor = package.size_divisor
        block_size, overlap = (-(-value // divisor) * divisor for value in (block_size, overlap))
        cores = [(y, min(y + block_size, height), x, min(x + block_size, width))
                 for y in range(0, height, block_size) for x in range(0, width, block_size)]
        windows = [(max(c[0] - overlap, 0), min(c[1] + overlap, height), max(c[2] - overlap, 0),
                    min(c[3] + overlap, width)) for c in cores]
        if intensity_range is None:
            intensity_range = client.submit(image_intensity_range, str(source), package.meta.get("normalization"),
                                            settings.channel, block_size, pure=False).result()
        diameter = settings.diameter
        if diameter is None:
            cy, cx, half = height // 2, width // 2, block_size // 2
            window = (max(cy - half, 0), min(cy + half, height), max(cx - half, 0), min(cx + half, width))
            diameter = client.submit(_estimate_diameter, str(source), str(model), settings, window,
                                     intensity_range, pure=False).result()
            if diameter is None:
                raise InvalidImageError(f"{source}: no object found in the central block to estimate the diameter "
                                        "from; give the diameter")
        shutil.rmtree(scratch, ignore_errors=True)
        _write_ome_zarr_header(output, (height, width), block_size, source.name)
        futures = [client.submit(_segment_block, str(source), str(model), settings, float(diameter), intensity_range,
                                 window, core, (height, width), str(scratch), pure=False)
                   for core, window in zip(cores, windows)]
        if progress is not None:
            from distributed import as_completed

            for done, _ in enumerate(as_completed(futures), 1):
                progress(done, len(futures))
        blocks = client.gather(futures)
        offsets = np.concatenate([[0], np.cumsum([b["n"] for b in blocks])[:-1]]).astype(int)
        paint = []
        for core in cores:
            pieces = [(b["core"], b["window"], int(off)) for b, off in zip(blocks, offsets)
                      if b["window"][0] < core[1] and b["window"][1] > core[0]
                      and b["window"][2] < core[3] and b["window"][3] > core[2]]
            paint.append(client.submit(_paint_core, core, pieces, str(scratch), str(output), pure=False))
        conflicts = client.gather(paint)
    shutil.rmtree(scratch, ignore_errors=True)
    tables = []
    for block, offset in zip(blocks, offsets):
        if block["table"] is not None:
            block["table"]["label"] += offset
            tables.append(block["table"])
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    write_table(table_path, table, overwrite=overwrite)
    stats = [{k: v for k, v in b.items() if k != "table"} | {"conflict_pixels": c} for b, c in zip(blocks, conflicts)]
    return LargeImageResult(output, table_path, int(sum(b["n"] for b in blocks)), float(diameter), intensity_range,
                            stats)
