"""``cytolens restore`` and ``cytolens train-denoiser`` (logic in :mod:`cytolens.tasks.restoration`)."""

from __future__ import annotations

from pathlib import Path

import typer

from cytolens.cli._common import user_errors

#: the suffix of what ``restore`` writes: ``<stem>_restored.tif``
RESTORED_SUFFIX = "_restored.tif"


def _image_files(paths: list[Path]) -> list[Path]:
    from cytolens.cli.segment_cmds import _image_files as files

    return files(paths)


@user_errors
def restore_command(
    images: list[Path] = typer.Argument(..., help="Image files (TIFF, PNG) or folders of them; a z-stack is read "
                                        "as planes/channels (C, Y, X)."),
    model: str = typer.Option(..., "--model", "-m", help="Bundled restoration model (label-free-nuclei) or a model "
                              "package folder (train-denoiser writes one)."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for <stem>_restored.tif (float32; CYX when "
                                "several channels are predicted)."),
    tile_size: int | None = typer.Option(None, help="Tile side for tiled inference (default: the model's)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-image lines."),
) -> None:
    """Restore images with a restoration model: denoise them, or predict fluorescence from transmitted light."""
    from cytolens.api import _load, restore
    from cytolens.errors import OutputExistsError
    from cytolens.io import make_folder, read_image, write_image

    files = _image_files(images)
    package = _load(model)
    targets = [output / f"{path.stem}{RESTORED_SUFFIX}" for path in files]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]} exists ({len(existing)} output file(s) in all); pass --overwrite "
                                "or choose another output folder")
    make_folder(output)
    for path, target in zip(files, targets):
        restored = restore(read_image(path), model=package, tile_size=tile_size)
        write_image(target, restored.astype("float32"), overwrite=overwrite,
                    axes="YX" if restored.ndim == 2 else "CYX")
        if not quiet:
            typer.echo(f"{path.name}: wrote {target}")


@user_errors
def train_denoiser_command(
    images: list[Path] = typer.Argument(..., help="Noisy image files or folders of them: all the training data."),
    output: Path = typer.Option(..., "-o", "--output", help="Model package folder to write (restore --model it)."),
    minutes: float = typer.Option(5.0, "--minutes", help="Training time budget in minutes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model package."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or per-epoch lines."),
) -> None:
    """Train a self-supervised Noise2Void (N2V2) denoiser on noisy images alone, within a time budget."""
    from cytolens.api import train_denoiser

    result = train_denoiser(_image_files(images), output, minutes=minutes, overwrite=overwrite, progress=not quiet)
    typer.echo(f"wrote {result.package} ({len(result.history)} epochs; val_loss {result.best['val_loss']:.4g}); "
               f"restore with: cytolens restore IMAGES --model {result.package} -o OUT")


def register(app: typer.Typer) -> None:
    """Add ``restore`` and ``train-denoiser`` to ``app``."""
    app.command("restore")(restore_command)
    app.command("train-denoiser")(train_denoiser_command)
