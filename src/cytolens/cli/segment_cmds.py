"""``cytolens segment``, ``cytolens measure``, ``cytolens models``, ``cytolens demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cytolens.cli._common import progress_listener, user_errors, warnings_about
from cytolens.errors import ImageReadError, InvalidImageError, InvalidParameterError, OutputExistsError
from cytolens.io.results import file_stem, is_result_file, result_files

if TYPE_CHECKING:
    from cytolens.tasks.segmentation.inference import SegmentationInfo

models_app = typer.Typer(help="List, describe, export and import models.", no_args_is_help=True)


#: the run summary ``cytolens segment`` writes in its output folder unless ``--summary`` names another file
SUMMARY_NAME = "segment_summary.csv"
#: its columns, one row per input image
SUMMARY_COLUMNS = ("file", "status", "objects", "diameter", "diameter_from", "scale", "certainty", "filter_rejected",
                   "warnings", "error")


def _summary_row(image_path: Path, info: SegmentationInfo | None = None, error: str = "") -> dict:
    """One row of the run summary: how an image was segmented (``info``), or why it failed (``error``)."""
    if info is None:
        return {"file": str(image_path), "status": "failed", "error": error}
    return {"file": str(image_path), "status": "ok", "objects": info.n_objects,
            "diameter": _rounded(info.diameter, 2), "diameter_from": "estimated" if info.estimated else "given",
            "scale": _rounded(info.scale, 4), "certainty": _rounded(info.certainty, 3),
            "filter_rejected": _rounded(info.filter_rejected, 3), "warnings": " | ".join(info.warnings)}


def _earlier_summary(path: Path) -> list[dict]:
    """The rows of a run summary an earlier ``cytolens segment`` wrote; a clear error if it is not one."""
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise OutputExistsError(f"{path} exists and is not a readable run summary ({exc}); add --overwrite to "
                                "replace it, or --summary to write the run summary to another file") from None
    if tuple(table.columns) != SUMMARY_COLUMNS:
        raise OutputExistsError(f"{path} exists and is not a run summary of cytolens segment (columns "
                                f"{', '.join(table.columns)}); add --overwrite to replace it, or --summary to write "
                                "the run summary to another file")
    return table.to_dict("records")


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _image_line(image_path: Path, info: SegmentationInfo) -> str:
    """The line ``cytolens segment`` prints for one image (unless ``--quiet``)."""
    if info.diameter is None:
        line = f"{image_path.name}: 0 objects (none found to estimate the diameter from)"
    else:
        line = (f"{image_path.name}: {info.n_objects} objects, diameter {info.diameter:.3g} px "
                f"({'estimated' if info.estimated else 'given'}), scale {info.scale:.3g}")
    return line + (f", {len(info.warnings)} warning(s)" if info.warnings else "")


def parse_params(items: list[str]) -> dict[str, float]:
    """``["marker_threshold=0.5", ...]`` → ``{"marker_threshold": 0.5}``; a clear error for anything else."""
    params = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            number = float(value) if key.strip() else None
        except ValueError:
            number = None
        if number is None:
            raise InvalidParameterError(f"--param {item!r}: expected NAME=NUMBER, e.g. marker_threshold=0.5")
        params[key.strip()] = number
    return params


@user_errors
def segment(
    images: list[Path] = typer.Argument(..., help="Image files (TIFF, PNG, JPEG) or folders of them to segment "
                                                  "(in a folder, *_labels and *_overlay.png files, this "
                                                  "command's outputs, are skipped)."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for <stem>_labels.tif and <stem>_cells.csv "
                                                            "(and the extras asked for below)."),
    model: str = typer.Option("nuclei", "--model", "-m", help="Bundled model name or model package path."),
    diameter: float | None = typer.Option(None, help="Typical object diameter in pixels (estimated if omitted)."),
    tile_size: int = typer.Option(512, help="Tile side for tiled inference (bounds memory)."),
    min_size: int | None = typer.Option(None, help="Drop objects smaller than this (model pixels)."),
    augment: bool = typer.Option(False, "--augment", help="Test-time augmentation over flips (4x slower)."),
    gamma: float = typer.Option(1.0, help="Gamma on the normalized intensities; e.g. 0.67 keeps textured "
                                          "nuclei whole."),
    filter_objects: bool = typer.Option(True, "--filter-objects/--keep-all-objects",
                                        help="Drop objects the model's object classifier judges spurious "
                                             "(when the model has one)."),
    precision: str = typer.Option("float32", help="float32, or bfloat16: mixed precision, ~2x faster on CPUs "
                                                  "with AVX-512 BF16 (slightly different results)."),
    channel: int | None = typer.Option(None, help="Segment only this channel of a multichannel image (0 = the "
                                                  "first), e.g. the nuclear stain; the table still measures "
                                                  "every channel."),
    channels: str | None = typer.Option(None, "--channels", help="For a model that declares its input channels "
                                                                 "(e.g. cytoplasm + nucleus): the image's "
                                                                 "channels to give it, in its order, e.g. 1,0."),
    param: list[str] | None = typer.Option(None, "--param", help="Override a post-processing default, e.g. "
                                                                 "--param marker_threshold=0.5 (repeatable; "
                                                                 "`cytolens models info` lists them)."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write <stem>_overlay.png: the objects' outlines "
                                                           "drawn over the image, to check the result by eye."),
    rois: bool = typer.Option(False, "--rois", help="Also write <stem>_rois.zip: each object as a polygon ROI "
                                                     "named by its label, for the ImageJ / Fiji ROI Manager."),
    geojson: bool = typer.Option(False, "--geojson", help="Also write <stem>_objects.geojson: each object as a "
                                                           "polygon (a detection named by its label), for QuPath."),
    summary: Path | None = typer.Option(None, "--summary", help="Run summary CSV: one row per image with its "
                                                                "status, object count, diameter, scale and "
                                                                "warnings (default: <output>/segment_summary.csv; "
                                                                "a later run adds its rows)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, per-image lines or closing line "
                                                            "(the summary CSV is still written)."),
    dask: str | None = typer.Option(None, "--dask", metavar="ADDRESS",
                                    help="Segment the images in parallel on a Dask cluster: a scheduler address "
                                         "(tcp://host:8786), or `local` (`local:N` for N workers) for a "
                                         "LocalCluster on this machine. Same files as without it."),
    axes: str | None = typer.Option(None, "--axes", help="ZYX: each input is a volume (a TIFF stack, (Z, Y, X) or "
                                                         "(Z, Y, X, C)); its labels are a ZYX TIFF and its table "
                                                         "has volume, surface area and 3D centroids. CYX: each "
                                                         "input is a 2D image with its channels first."),
    anisotropy: float = typer.Option(1.0, help="Volumes: Z step / XY pixel size (e.g. 2 when planes are twice "
                                               "as far apart as pixels)."),
    volume_method: str = typer.Option("auto", help="Volumes: native (a 3D model), slices (a 2D model on each "
                                                   "plane, linked through Z by overlap) or auto."),
) -> None:
    """Segment each image; write a label TIFF and a per-object measurement CSV for each.

    Each image gets a line (objects found, the diameter used and whether it was
    estimated, the scale) and a row in the run summary CSV. An image that cannot be
    read or segmented is reported on its own line and the others are still segmented;
    the exit status is then 1.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from cytolens import models
    from cytolens.io import check_output_folder, write_table
    from cytolens.nn.precision import effective_precision
    from cytolens.progress import reporter
    from cytolens.segment_files import SegmentSettings, segment_file
    from cytolens.tasks.segmentation.inference import check_settings

    images = _image_files(images)
    extras = tuple(name for name, wanted in (("overlay", overlay), ("rois", rois), ("geojson", geojson)) if wanted)
    # every setting is checked before the outputs: the first error names the real problem
    package = models.load(model)
    postprocess = parse_params(param or [])
    extra = postprocess | ({"min_size": min_size} if min_size is not None else {})
    check_settings(package, diameter=diameter, tile_size=tile_size, gamma=gamma, precision=precision, **extra)
    volumes = _volume_mode(axes)
    channels_first = axes is not None and axes.upper() == "CYX"
    picked = parse_channels(channels, channel)
    if volumes:  # every volume is checked before anything is written
        from cytolens.cli.volume_checks import check_volume_run

        check_volume_run(package, images, anisotropy, volume_method, channel, extras, picked)
    else:  # a model that declares its channels: every file's channel count is checked before anything is written
        from cytolens.cli.volume_checks import check_channel_run

        check_channel_run(package, images, channels_first, channel, picked)
    # a CPU without bfloat16 says so once, not once per image
    precision = effective_precision(precision, next(package.network.parameters()).device)
    check_output_folder(output)
    summary = summary or output / SUMMARY_NAME
    if summary.is_dir():
        raise OutputExistsError(f"{summary} is a folder; --summary takes the name of the CSV file to write")
    check_output_folder(summary.parent)
    if not overwrite:  # refuse before doing any work
        for image_path in images:
            for target in result_files(image_path, output, extras).values():
                if target.exists():
                    raise OutputExistsError(f"{target} exists; add --overwrite to replace it")
    stems = [file_stem(p) for p in images]
    if len(set(stems)) != len(stems):
        raise InvalidParameterError("two inputs share a file name stem; their outputs would collide")
    total, failed = 0, 0
    # a summary from an earlier run into the same folder is kept: this run's rows are added after its rows
    rows: list[dict] = [] if overwrite or not summary.exists() else _earlier_summary(summary)
    earlier = len(rows)

    def add_row(row: dict) -> None:  # rewritten after each image: an interrupted run keeps its summary so far
        rows.append(row)
        table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype({"objects": "Int64"})  # blank when failed
        write_table(summary, table, overwrite=overwrite or earlier > 0 or len(rows) > 1)

    settings = SegmentSettings(diameter=diameter, tile_size=tile_size, min_size=min_size, augment=augment,
                               gamma=gamma, filter_objects=filter_objects, precision=precision, channel=channel,
                               channels=picked, postprocess=postprocess, overlay=overlay, rois=rois, geojson=geojson,
                               axes="ZYX" if volumes else "CYX" if channels_first else None, anisotropy=anisotropy,
                               volume_method=volume_method)

    def run_here(image_path: Path) -> tuple[Path, SegmentationInfo | None, Exception | None]:
        try:
            with warnings_about(image_path):  # `warning: <image>: ...`, for each image that raises it
                return image_path, segment_file(image_path, output, package, settings, overwrite=overwrite), None
        except (ImageReadError, InvalidImageError) as exc:  # this image's problem: go on with the others
            return image_path, None, exc

    if dask:
        from cytolens.distributed import segment_files_on_dask

        outcomes = segment_files_on_dask(images, output, model, settings, address=dask, overwrite=overwrite)
    else:
        outcomes = map(run_here, images)
    report = reporter(progress_listener(quiet), "segmenting", total=len(images))
    for images_done, (image_path, info, exc) in enumerate(outcomes, start=1):
        if info is None:
            failed += 1
            message = str(exc) if str(image_path) in str(exc) else f"{image_path}: {exc}"
            typer.echo(f"error: {message}", err=True)
            add_row(_summary_row(image_path, error=str(exc)))
            report(images_done, f"{image_path.name} failed")
            continue
        total += info.n_objects
        add_row(_summary_row(image_path, info))
        if not quiet:
            line = f"{image_path.name}: {info.n_objects} objects (volume)" if volumes else _image_line(image_path, info)
            tqdm.write(line)  # above the progress bar, not through it
        report(images_done, image_path.name)
    done = len(images) - failed
    if failed and len(images) > 1:
        typer.echo(f"error: {failed} of {len(images)} images failed; the other {done} are segmented", err=True)
    if not quiet and done:
        typer.echo(f"{total} objects in {done} image(s); results in {output}, run summary in {summary}")
    if failed:
        raise typer.Exit(code=1)


def _volume_mode(axes: str | None) -> bool:
    """True for ``--axes ZYX`` (or ZYXC), False for none / YX / CYX; an error for anything else."""
    if axes is None or axes.upper() in ("YX", "YXC", "CYX"):
        return False
    if axes.upper() in ("ZYX", "ZYXC"):
        return True
    raise InvalidParameterError(f"--axes takes YX or CYX (images) or ZYX (volumes), got {axes!r}")


def parse_channels(text: str | None, channel: int | None) -> list[int] | None:
    """``--channels 1,0`` → ``[1, 0]``; a clear error for anything else, or with ``--channel`` too.

    >>> parse_channels("1, 0", None)
    [1, 0]
    """
    from cytolens.tasks.segmentation.channels import check_channel_list

    if text is None:
        return None
    if channel is not None:
        raise InvalidParameterError("give --channel (one channel) or --channels (several, in the model's order), "
                                    "not both")
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise InvalidParameterError(f"--channels takes channel numbers separated by commas, e.g. 0,1; got {text!r}")
    return check_channel_list([int(part) for part in parts], "--channels")


def _image_files(paths: list[Path]) -> list[Path]:
    """The files to segment: each path, or a folder's images; every one must exist."""
    from cytolens.io import IMAGE_SUFFIXES, list_images

    files = []
    for path in paths:
        if path.is_dir():
            found = [f for f in list_images(path) if not is_result_file(f)]
            if not found:
                raise ImageReadError(f"folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        else:
            files.append(path)
    missing = [p for p in files if not p.exists()]
    if missing:  # a typo in a path: stop before any work
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ImageReadError(f"file not found: {missing[0]}{more}; check the path and the current folder")
    return files


@user_errors
def measure_command(
    labels: Path = typer.Argument(..., help="Label image (TIFF/PNG), 0 = background."),
    image: Path | None = typer.Option(None, "--image", "-i", help="Intensity image for intensity columns."),
    output: Path = typer.Option(..., "-o", "--output", help="Table to write (.csv or .parquet)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing table."),
    force: bool = typer.Option(False, "--force", help="Measure the labels even when they look like an intensity "
                                                      "image or a mask (ids split into many pieces each)."),
) -> None:
    """Measure every object of a label image (morphology and per-channel intensity)."""
    from cytolens.api import measure
    from cytolens.io import read_image, write_table

    table = measure(read_image(labels), None if image is None else read_image(image), force=force)
    write_table(output, table, overwrite=overwrite)
    typer.echo(f"{len(table)} objects measured; table in {output}")


@models_app.command("list")
@user_errors
def models_list() -> None:
    """List the bundled models."""
    from cytolens.models import bundled_models, read_meta

    for name in bundled_models():
        meta = read_meta(name)
        scores = meta.get("validation", {}).get("overall", {})
        ap = f"  AP@0.5={scores['ap50']:.3f}" if "ap50" in scores else ""
        ap += f"  macro-F1={scores['macro_f1']:.3f}" if "macro_f1" in scores else ""
        kind = meta.get("task") + (f"/{meta['schema']}" if meta.get("schema") else "")
        typer.echo(f"{name}\t{kind}{ap}")


@models_app.command("info")
@user_errors
def models_info(name: str = typer.Argument(..., help="Bundled model name or package path."),
                as_json: bool = typer.Option(False, "--json", help="Print the whole model.json instead.")) -> None:
    """Describe a model: task, network and size, input, scale, post-processing, training data, scores, license."""
    from cytolens.models import read_meta
    from cytolens.models.describe import describe

    typer.echo(json.dumps(read_meta(name), indent=2) if as_json else describe(name))


@user_errors
def demo(
    output: Path = typer.Option(Path("cytolens-demo"), "-o", "--output", help="Folder for the demo outputs."),
    seed: int = typer.Option(0, help="Seed of the synthetic image."),
    overwrite: bool = typer.Option(True, "--overwrite/--no-overwrite", help="Replace earlier demo outputs."),
) -> None:
    """Segment a synthetic fluorescence image with the bundled model and score it against its truth."""
    from cytolens.demo import run_demo

    result = run_demo(output, seed=seed, overwrite=overwrite)
    typer.echo(f"synthetic image: {result['n_true']} nuclei; found {result['n_pred']}")
    typer.echo(f"AP@0.5 = {result['ap50']:.3f}   (precision {result['precision']:.3f}, recall {result['recall']:.3f})")
    for kind, path in result["files"].items():
        typer.echo(f"  {kind:<8} {path}")


def register(app: typer.Typer) -> None:
    """Add segment, measure, models and demo to ``app``."""
    app.command("segment")(segment)
    app.command("measure")(measure_command)
    app.command("demo")(demo)
    app.add_typer(models_app, name="models")
