"""``cytolens classify`` and ``cytolens embed`` (logic in :mod:`cytolens.tasks.classification.inference`)."""

from __future__ import annotations

from pathlib import Path

import typer

from cytolens.cli._common import user_errors
from cytolens.errors import ImageReadError, InvalidParameterError, OutputExistsError

MODEL = typer.Option("blood-cells", "--model", "-m", help="classifier: bundled name (blood-cells, "
                                                          "cell-cycle-label-free) or a package folder")
LABELS = typer.Option(None, "--labels", "-l", help="label image of the (one) input: one row per cell")
INPUTS = typer.Argument(..., help="images or folders (searched recursively)")
TABLE = typer.Option(..., "--output", "-o", help="CSV table: path, [label,] predicted, p_<class>...")
FOLDER = typer.Option(..., "--output", "-o", help="folder for embedding.csv and embedding.png")
CROP = typer.Option(None, "--crop-size", min=8, help="side of the crop around each cell (default: the model's)")


def image_files(inputs: list[Path]) -> list[Path]:
    """The image files of ``inputs``: files as given, folders searched recursively (sorted, hidden skipped)."""
    from cytolens.io.images import IMAGE_SUFFIXES

    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(item).parts))
            if not found:
                raise ImageReadError(f"{item} holds no image files (searched recursively)")
            files.extend(found)
        elif item.exists():
            files.append(item)
        else:
            raise ImageReadError(f"file not found: {item}")
    return files


def _check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite or choose another output")


@user_errors
def classify_command(
    inputs: list[Path] = INPUTS,
    model: str = MODEL,
    output: Path = TABLE,
    labels: Path | None = LABELS,
    crop_size: int | None = CROP,
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing table"),
) -> None:
    """Classify images (one row each) or the cells of one image (--labels, one row per cell)."""
    from cytolens.io import write_table
    from cytolens.tasks.classification.inference import classify, classify_paths

    _check_output(output, overwrite)
    files = image_files(inputs)
    if labels is not None:
        if len(files) != 1:
            raise InvalidParameterError(f"--labels goes with one image; got {len(files)}")
        table = classify(files[0], model, labels, crop_size=crop_size)
    else:
        table = classify_paths(files, model)
    write_table(output, table, overwrite=overwrite)
    counts = table["predicted"].value_counts()
    typer.echo(f"wrote {output}: {len(table)} {'cell' if labels is not None else 'image'}(s); "
               + ", ".join(f"{name} {n}" for name, n in counts.items()))


@user_errors
def embed_command(
    inputs: list[Path] = INPUTS,
    model: str = MODEL,
    output: Path = FOLDER,
    clusters: int | None = typer.Option(None, "--clusters", "-k", min=1, help="KMeans clusters of the features"),
    labels: Path | None = LABELS,
    crop_size: int | None = CROP,
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing files in the folder"),
) -> None:
    """Penultimate features per image or cell, a PCA (UMAP if installed) plot, and KMeans clusters."""
    from cytolens.io import make_folder, write_table
    from cytolens.tasks.classification.inference import add_umap, embed, plot_embedding

    table_path, plot_path = output / "embedding.csv", output / "embedding.png"
    for path in (table_path, plot_path):
        _check_output(path, overwrite)
    files = image_files(inputs)
    if labels is not None and len(files) != 1:
        raise InvalidParameterError(f"--labels goes with one image; got {len(files)}")
    table = embed(files[0] if labels is not None else [str(f) for f in files], model, labels, clusters=clusters,
                  crop_size=crop_size)
    umap = add_umap(table)
    make_folder(output)
    write_table(table_path, table, overwrite=overwrite)
    plot_embedding(table, plot_path)
    typer.echo(f"wrote {table_path} ({len(table)} rows) and {plot_path} ({'UMAP' if umap else 'PCA'})")


def register(app: typer.Typer) -> None:
    """Add ``classify`` and ``embed`` to ``app``."""
    app.command("classify")(classify_command)
    app.command("embed")(embed_command)
