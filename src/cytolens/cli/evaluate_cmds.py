"""``cytolens evaluate segmentation|classification|restoration|tracking``: thin wrappers over
:mod:`cytolens.evaluate`."""

from __future__ import annotations

from pathlib import Path

import typer

from cytolens.cli._common import user_errors

evaluate_app = typer.Typer(help="Score predictions against ground truth; write a table, summary.json and plots.",
                           no_args_is_help=True)

PRED = typer.Option(..., "--pred", "-p", help="Prediction: a file or a folder of files paired with the truth by name.")
TRUTH = typer.Option(..., "--truth", "-t", help="Ground truth: a file or a folder of files.")
OUTPUT = typer.Option(..., "-o", "--output", help="Folder for the per-item table, summary.json and plots.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace existing output files.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar or summary.")
CTC_PRED = typer.Option(..., "--pred", "-p", help="CTC result folder (mask*.tif + res_track.txt).")
CTC_TRUTH = typer.Option(..., "--truth", "-t", help="CTC ground-truth folder (*_GT with TRA/, SEG/).")
TOLERANCE = typer.Option(1, "--tolerance", min=0, help="Frame tolerance of the division scores.")


def _report(ev, lines: list[str], quiet: bool) -> None:
    if not quiet:
        for line in lines:
            typer.echo(line)
        typer.echo(f"wrote {', '.join(p.name for p in ev.files)} in {ev.files[0].parent}")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


@evaluate_app.command("segmentation")
@user_errors
def segmentation(pred: Path = PRED, truth: Path = TRUTH, output: Path = OUTPUT, overwrite: bool = OVERWRITE,
                 quiet: bool = QUIET) -> None:
    """Instance segmentation: AP over IoU thresholds, DSB2018 score, PQ, AJI, Dice, split/merge counts."""
    from cytolens.evaluate import evaluate_segmentation

    ev = evaluate_segmentation(pred, truth, output, overwrite=overwrite, quiet=quiet)
    s = ev.summary
    _report(ev, [(f"{s['n_items']} image(s): AP@0.5 {_fmt(s['ap']['0.5'])}  AP@0.75 {_fmt(s['ap']['0.75'])}  "
                  f"DSB2018 {_fmt(s['means']['dsb2018'])}  PQ {_fmt(s['means']['pq'])}  "
                  f"AJI {_fmt(s['means']['aji'])}")], quiet)


@evaluate_app.command("classification")
@user_errors
def classification(pred: Path = PRED, truth: Path = TRUTH, output: Path = OUTPUT,
                   key: str | None = typer.Option(None, help="Item column shared by both tables (default: id, item, "
                                                             "name, file, …)."),
                   truth_column: str | None = typer.Option(None, help="Class column of the truth table."),
                   pred_column: str | None = typer.Option(None, help="Class column of the prediction table."),
                   overwrite: bool = OVERWRITE, quiet: bool = QUIET) -> None:
    """Classification from two tables (CSV/TSV/Parquet): confusion matrix, per-class P/R/F1, accuracy."""
    from cytolens.evaluate import evaluate_classification

    ev = evaluate_classification(pred, truth, output, key=key, truth_column=truth_column, pred_column=pred_column,
                                 overwrite=overwrite)
    s = ev.summary
    _report(ev, [(f"{s['n_items']} item(s), {s['n_classes']} classes: accuracy {_fmt(s['accuracy'])}  "
                  f"balanced accuracy {_fmt(s['balanced_accuracy'])}  macro-F1 {_fmt(s['macro_f1'])}")], quiet)


@evaluate_app.command("restoration")
@user_errors
def restoration(pred: Path = PRED, truth: Path = TRUTH, output: Path = OUTPUT,
                care: bool = typer.Option(False, "--care", help="CARE convention: percentile-normalize the target "
                                                                "and fit the prediction affinely before scoring."),
                data_range: float | None = typer.Option(None, help="Intensity range for PSNR/SSIM (default: the "
                                                                   "target's max - min; 1 with --care)."),
                overwrite: bool = OVERWRITE, quiet: bool = QUIET) -> None:
    """Restoration: PSNR, SSIM, NRMSE, Pearson r per image."""
    from cytolens.evaluate import evaluate_restoration

    ev = evaluate_restoration(pred, truth, output, care=care, data_range=data_range, overwrite=overwrite,
                              quiet=quiet)
    m = ev.summary["means"]
    _report(ev, [(f"{ev.summary['n_items']} image(s){' (CARE normalization)' if care else ''}: "
                  f"PSNR {_fmt(m['psnr'])} dB  SSIM {_fmt(m['ssim'])}  NRMSE {_fmt(m['nrmse'])}  "
                  f"r {_fmt(m['pearson_r'])}")], quiet)


@evaluate_app.command("tracking")
@user_errors
def tracking(pred: Path = CTC_PRED, truth: Path = CTC_TRUTH, output: Path = OUTPUT, tolerance: int = TOLERANCE,
             overwrite: bool = OVERWRITE, quiet: bool = QUIET) -> None:
    """Cell Tracking Challenge: SEG, DET, TRA, LNK (AOGM, official weights) and division scores."""
    from cytolens.evaluate import evaluate_tracking

    ev = evaluate_tracking(pred, truth, output, division_tolerance=tolerance, overwrite=overwrite)
    s = ev.summary
    _report(ev, [f"SEG {_fmt(s['SEG'])}  DET {_fmt(s['DET'])}  TRA {_fmt(s['TRA'])}  LNK {_fmt(s['LNK'])}",
                 (f"divisions (±{tolerance} frame): precision {_fmt(s['division_precision'])}  "
                  f"recall {_fmt(s['division_recall'])}  F1 {_fmt(s['division_f1'])}"),
                 f"track purity {_fmt(s['track_purity'])}  target effectiveness {_fmt(s['target_effectiveness'])}"],
            quiet)


def register(app: typer.Typer) -> None:
    """Add ``cytolens evaluate …`` to ``app``."""
    app.add_typer(evaluate_app, name="evaluate")
