"""``cytolens segment-large``: one image larger than memory, block by block on Dask (:mod:`cytolens.distributed`)."""

from __future__ import annotations

from pathlib import Path

import typer

from cytolens.cli._common import user_errors


@user_errors
def segment_large(
    source: Path = typer.Argument(..., help="A big 2D image: Zarr, OME-Zarr or TIFF (read lazily, block by block)."),
    output: Path = typer.Option(..., "-o", "--output", help="OME-Zarr folder for the labels (e.g. slide.ome.zarr); "
                                                            "the table goes beside it as <name>_cells.csv."),
    model: str = typer.Option("nuclei", "--model", "-m", help="Bundled model name or model package path."),
    diameter: float | None = typer.Option(None, help="Object diameter in pixels, one for every block (estimated "
                                                     "once, on the central block, if omitted)."),
    block_size: int = typer.Option(2048, help="Core block side: a worker holds one padded block at a time "
                                              "(rounded up to a multiple of 16)."),
    overlap: int = typer.Option(128, help="Context on each side of a block; more than the largest object "
                                          "(rounded up to a multiple of 16)."),
    dask: str = typer.Option("local", "--dask", metavar="ADDRESS", help="Scheduler address, or local / local:N."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Segment one image larger than memory block-wise on Dask; cells across block borders are stitched."""
    from cytolens.distributed import segment_large_image
    from cytolens.segment_files import SegmentSettings

    result = segment_large_image(source, output, model, SegmentSettings(diameter=diameter), block_size=block_size,
                                 overlap=overlap, address=dask, overwrite=overwrite)
    typer.echo(f"{result.n_objects} objects in {len(result.blocks)} blocks (diameter {result.diameter:.3g} px); "
               f"labels in {result.labels}, table in {result.table}")


def register(app: typer.Typer) -> None:
    """Add segment-large to ``app``."""
    app.command("segment-large")(segment_large)
