"""``cytolens finetune`` and ``cytolens project …`` (logic in :mod:`cytolens.tasks.segmentation.finetune`
and :mod:`cytolens.project`)."""

from __future__ import annotations

from pathlib import Path

import typer

from cytolens.cli._common import user_errors

project_app = typer.Typer(help="A project folder per dataset: images, predictions, corrections, fine-tuned models.",
                          no_args_is_help=True)


def _image_files(paths: list[Path]) -> list[Path]:
    from cytolens.cli.segment_cmds import _image_files as files

    return files(paths)


def _report(result) -> None:
    scores = ", ".join(f"{k}={v:.3f}" for k, v in result.best.items() if k.startswith("val_"))
    where = "held-out" if result.held_out else "training (too few images to hold some out)"
    typer.echo(f"wrote {result.package} ({result.epochs} epochs on {len(result.train_ids)} image(s); "
               f"{where} images: {scores}); segment with: cytolens segment IMAGES --model {result.package} -o OUT")
    if isinstance(result.object_filter, str):
        typer.echo(f"note: object filter {result.object_filter}", err=True)
    for message in result.messages:
        typer.echo(f"note: {message}", err=True)


@user_errors
def finetune_command(
    images: list[Path] = typer.Argument(..., help="The image files (or folders) whose labels you corrected."),
    labels: Path = typer.Option(..., "--labels", "-l", help="Folder of the corrected label images, matched by file "
                                "stem: img.tif -> img.tif, img_labels.tif or img_masks.tif (0 = background)."),
    model: str = typer.Option("nuclei", "--model", "-m", help="Model to start from: a bundled name or a package."),
    output: Path = typer.Option(..., "-o", "--output", help="Model package folder to write (segment --model it)."),
    minutes: float = typer.Option(10.0, "--minutes", help="Training time budget in minutes."),
    cpu_time: bool = typer.Option(False, "--cpu-time", help="Count the budget as this process's CPU time (fair "
                                  "on a busy machine) rather than wall-clock time."),
    learning_rate: float = typer.Option(1e-4, "--learning-rate", help="Peak learning rate. Higher adapts faster "
                                        "to images very unlike the model's (another modality) but forgets more on "
                                        "images like its own (benchmarks/human_in_the_loop.py --learning-rate)."),
    seed: int = typer.Option(0, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model package."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or per-epoch lines."),
) -> None:
    """Fine-tune a copy of a segmentation model on your corrected labels (human in the loop)."""
    from cytolens.api import finetune

    _report(finetune(_image_files(images), labels, output, model=model, minutes=minutes, overwrite=overwrite,
                     progress=not quiet, seed=seed, cpu_budget=cpu_time, learning_rate=learning_rate))


@user_errors
def project_add_command(
    project: Path = typer.Argument(..., help="Project folder (created if new)."),
    images: list[Path] = typer.Argument(..., help="Image files or folders to add (copied into the project)."),
    model: str = typer.Option("nuclei", "--model", "-m", help="The model of a new project."),
    labels: Path | None = typer.Option(None, "--labels", "-l", help="Folder of corrected labels to record too "
                                       "(matched by file stem, as finetune matches them)."),
) -> None:
    """Add images (and optionally their corrected labels) to a project folder."""
    from cytolens.io import read_image
    from cytolens.project import Project
    from cytolens.tasks.segmentation.finetune import match_labels

    files = _image_files(images)
    pairs = match_labels(files, labels) if labels is not None else [(f, None) for f in files]
    handle = Project.create(project, model=model, exist_ok=True)
    for image, label_file in pairs:
        name = handle.add_image(image)
        if label_file is not None:
            handle.save_correction(name, read_image(label_file))
    typer.echo(f"{project}: {len(handle.images())} image(s), {len(handle.corrected())} corrected")


@user_errors
def project_status_command(project: Path = typer.Argument(..., help="Project folder.")) -> None:
    """List a project's images: when each was predicted and corrected, and its models."""
    from cytolens.project import Project

    handle = Project.open(project)
    typer.echo(f"model: {handle.model}")
    for row in handle.status():
        typer.echo(f"{row['name']}\tpredicted: {row['predicted'] or '-'}\tcorrected: {row['corrected'] or '-'}"
                   + (f" ({row['objects']} objects)" if row["corrected"] else ""))
    for entry in handle.record["models"]:
        typer.echo(f"fine-tuned: {entry['path']} ({entry['trained']}, {len(entry['images'])} image(s))")


@user_errors
def project_finetune_command(
    project: Path = typer.Argument(..., help="Project folder with corrected images."),
    minutes: float = typer.Option(10.0, "--minutes", help="Training time budget in minutes."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Package folder (default: <project>/models/...)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model package."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Fine-tune the project's model on its corrected images; the project then segments with the new model."""
    from cytolens.project import Project

    _report(Project.open(project).finetune(output, minutes=minutes, overwrite=overwrite, progress=not quiet))


def register(app: typer.Typer) -> None:
    """Add ``finetune`` and the ``project`` commands to ``app``."""
    app.command("finetune")(finetune_command)
    project_app.command("add")(project_add_command)
    project_app.command("status")(project_status_command)
    project_app.command("finetune")(project_finetune_command)
    app.add_typer(project_app, name="project")
