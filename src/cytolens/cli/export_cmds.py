"""``cytolens models export`` and ``cytolens models import``: ONNX, TorchScript, bioimage.io (:mod:`cytolens.models.export`)."""

from __future__ import annotations

from pathlib import Path

import typer

from cytolens.cli._common import user_errors


@user_errors
def export_command(
    name: str = typer.Argument(..., help="Bundled model name or model package path."),
    fmt: str = typer.Option(..., "--format", "-f", help="onnx, torchscript or bioimageio (a model package .zip)."),
    output: Path = typer.Option(..., "-o", "--output", help="File to write (e.g. nuclei.onnx, nuclei.pt, nuclei.zip)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Export a model as ONNX, TorchScript or a bioimage.io model package (the cytolens description travels inside)."""
    from cytolens.models.export import export_model

    path = export_model(name, fmt.lower(), output, overwrite=overwrite)
    typer.echo(f"{name} exported as {fmt.lower()} to {path}")


@user_errors
def import_command(
    package: Path = typer.Argument(..., help="A bioimage.io model package (.zip or folder) cytolens exported."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the cytolens model package."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
) -> None:
    """Turn a bioimage.io package of a cytolens model back into a cytolens model package folder."""
    from cytolens.models.export import import_bioimageio

    path = import_bioimageio(package, output, overwrite=overwrite)
    typer.echo(f"cytolens model package in {path} (use it as --model {path})")


def register(app: typer.Typer) -> None:
    """Add export and import to the ``cytolens models`` group (made by ``segment_cmds``)."""
    from cytolens.cli.segment_cmds import models_app

    models_app.command("export")(export_command)
    models_app.command("import")(import_command)
