"""``cytolens train``, ``tune``, ``learning-curve`` and ``fit-object-filter`` (logic in :mod:`cytolens.train`)."""

from __future__ import annotations

from pathlib import Path

import typer

from cytolens.cli._common import user_errors
from cytolens.errors import InvalidParameterError


def _fractions(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidParameterError(
            f"--fractions must be comma-separated numbers like 0.1,0.25,0.5,1, got {text!r}") from None


@user_errors
def train_command(
    config: Path = typer.Argument(..., help="training config (YAML); see training/nuclei/config.yaml"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing model package at `output`"),
    restart: bool = typer.Option(False, "--restart", help="ignore the checkpoint in <output>.work and start over"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars or per-epoch lines"),
) -> None:
    """Train a model from a config and write its model package (config, split and curves included)."""
    from cytolens.train import run

    result = run(config, progress=not quiet, overwrite=overwrite, resume=not restart)
    scores = ", ".join(f"{k}={v:.4f}" for k, v in result.best.items() if k.startswith("val_"))
    typer.echo(f"wrote {result.package} (best epoch {result.best['epoch']}: {scores})")
    for message in result.messages:
        typer.echo(f"note: {message}", err=True)


@user_errors
def tune_command(
    config: Path = typer.Argument(..., help="training config (YAML); its budget is used for every trial"),
    trials: int = typer.Option(20, "--trials", "-n", min=1, help="number of trials"),
    output: Path | None = typer.Option(None, "--output", "-o", help="results folder (default <output>.tune)"),
    timeout_minutes: float | None = typer.Option(None, "--timeout-minutes", help="start no trial after this long"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Search learning rate, weight decay, width, depth and augmentation strength with optuna."""
    from cytolens.train import tune

    result = tune(config, trials, output, timeout_minutes=timeout_minutes, progress=not quiet)
    typer.echo(f"best {result.metric}={result.best_value:.4f}: {result.best_params}")
    typer.echo(f"wrote {result.out_dir / 'trials.csv'}, {result.plot} and {result.best_config}")


@user_errors
def learning_curve_command(
    config: Path = typer.Argument(..., help="training config (YAML)"),
    fractions: str = typer.Option("0.1,0.25,0.5,1", "--fractions", help="growing fractions of the train split"),
    threshold: float = typer.Option(0.02, "--threshold", help="a last step gaining less than this = flattened"),
    output: Path | None = typer.Option(None, "--output", "-o", help="results folder (default <output>.learning_curve)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train on growing fractions of the training data: would more annotation help?"""
    from cytolens.train import learning_curve

    result = learning_curve(config, _fractions(fractions), output, threshold=threshold, progress=not quiet)
    typer.echo(result.message)
    typer.echo(f"wrote {result.out_dir / 'learning_curve.csv'} and {result.plot}")


@user_errors
def fit_object_filter_command(
    config: Path = typer.Argument(..., help="the training config of the model (its data and split are used)"),
    package: Path | None = typer.Option(None, "--package", "-p", help="model package folder (default: the "
                                                                      "config's output)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Fit the object filter of a trained segmentation model on its train split (object_filter.json)."""
    from cytolens.tasks.segmentation.object_filter_fit import fit_object_filter
    from cytolens.train.config import load_config

    loaded = load_config(config)
    folder = package if package is not None else loaded.output
    scores = fit_object_filter(folder, loaded, progress=not quiet)
    typer.echo(f"wrote {Path(folder) / 'object_filter.json'}: threshold {scores['threshold']}, cross-validated "
               f"AP@0.5 on train {scores['cv_ap50_without_filter']:.3f} -> "
               f"{scores['cv_ap50_by_threshold'][str(scores['threshold'])]:.3f}")


def register(app: typer.Typer) -> None:
    """Add ``train``, ``tune``, ``learning-curve`` and ``fit-object-filter`` to ``app``."""
    app.command("fit-object-filter")(fit_object_filter_command)
    app.command("train")(train_command)
    app.command("tune")(tune_command)
    app.command("learning-curve")(learning_curve_command)
