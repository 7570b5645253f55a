"""``cytolens track``: segment a movie and link, or link a given segmentation."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cytolens.cli._common import user_errors


def _read_movie(path: Path):
    """A ``(T, Y, X[, C])`` movie from a multi-frame TIFF or a folder of numbered frames."""
    import numpy as np

    from cytolens.errors import InvalidImageError
    from cytolens.io import list_images, read_ctc_masks, read_image

    if path.is_dir():
        try:
            return read_ctc_masks(path)  # any numbered TIFF frames (t000.tif, ...)
        except Exception:
            files = list_images(path)
            frames = [read_image(f) for f in files]
            shapes = sorted({f.shape for f in frames})
            if len(shapes) > 1:
                raise InvalidImageError(f"{path}: frames have different shapes {shapes}") from None
            if not frames:
                raise InvalidImageError(f"{path} holds no image files") from None
            return np.stack(frames)
    from cytolens.track.detections import read_stack

    return read_stack(path)


def track_command(
    movie: Path | None = typer.Argument(None, help="Movie to segment and track: a (T, Y, X) TIFF or a folder "
                                                      "of frames."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder (CTC result + tracks.csv + lineage.png)."),
    labels: Path | None = typer.Option(None, "--labels", help="Link this segmentation instead: a (T, Y, X) label "
                                                                 "TIFF or a folder of per-frame masks."),
    model: str = typer.Option("nuclei", help="Segmentation model (when segmenting MOVIE)."),
    diameter: float | None = typer.Option(None, help="Object diameter in pixels; estimated when omitted."),
    gamma: float | None = typer.Option(None, help="Input gamma when segmenting MOVIE (default 0.67 for "
                                                  "fluorescence, 1 otherwise)."),
    precision: str = typer.Option("float32", help="float32, or bfloat16: mixed precision when segmenting MOVIE, "
                                                  "~2x faster on CPUs with AVX-512 BF16."),
    channel: int | None = typer.Option(None, help="Use only this channel of a multichannel MOVIE (0 = the first), "
                                                  "e.g. the nuclear marker."),
    max_gap: int = typer.Option(2, help="Missed frames a track may bridge (0 = no gap closing)."),
    search_radius: float | None = typer.Option(None, help="Largest frame-to-frame move in pixels; estimated "
                                                             "when omitted."),
    divisions: bool = typer.Option(True, "--divisions/--no-divisions", help="Detect cell divisions."),
    link_model: Path | None = typer.Option(None, "--link-model", help="Use a learned link cost (JSON written by "
                                                                        "`cytolens track-learn`) instead of the "
                                                                        "hand-made one."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Track every cell through a movie (divisions included) and write a CTC result folder.

    Writes mask%03d.tif + res_track.txt (Cell Tracking Challenge format), tracks.csv
    (track_id, t, label, y, x, parent_track_id, ...), tracks_graph.json (napari graph),
    lineage.png and config.json (the settings used, estimated ones filled in).
    """
    import cytolens.track as tracking
    from cytolens.errors import InvalidParameterError, OutputExistsError
    from cytolens.io import atomic_write, check_output_folder, write_table
    from cytolens.progress import tqdm_listener

    if (movie is None) == (labels is None):
        raise InvalidParameterError("give either a MOVIE to segment or --labels LABELS to link (exactly one)")
    if channel is not None and movie is None:
        raise InvalidParameterError("--channel picks a channel of a MOVIE to segment; --labels are linked as they are")
    settings = {"max_gap": max_gap, "divisions": divisions}
    if search_radius is not None:
        settings["search_radius"] = search_radius
    if diameter is not None:
        settings["cell_diameter"] = diameter
    if link_model is not None:
        if not link_model.is_file():
            raise InvalidParameterError(f"--link-model {link_model}: no such file")
        settings.update(link_cost="learned", link_model=str(link_model))
    output = check_output_folder(output)  # before the long work, not after it
    targets = [output / name for name in ("res_track.txt", "tracks.csv", "tracks_graph.json", "lineage.png",
                                          "config.json")]
    if not overwrite:
        existing = [p for p in targets if p.exists()]
        if existing:
            raise OutputExistsError(f"{existing[0]} exists; pass --overwrite to replace it")
    progress = None if quiet else tqdm_listener()
    if labels is not None:
        result = tracking.track(labels=tracking.read_label_movie(labels), progress=progress, **settings)
    else:
        result = tracking.track(_read_movie(movie), model=model, diameter=diameter, gamma=gamma,
                                precision=precision, channel=channel, progress=progress, **settings)
    result.to_ctc(output, overwrite=overwrite)
    write_table(output / "tracks.csv", result.to_table(), overwrite=overwrite)
    _, graph = result.to_napari()
    atomic_write(output / "tracks_graph.json", lambda tmp: tmp.write_text(json.dumps(graph)), overwrite)
    atomic_write(output / "config.json", lambda tmp: tmp.write_text(json.dumps(result.config, indent=2)), overwrite)
    result.plot_lineage(output / "lineage.png", overwrite=overwrite)
    if not quiet:
        ctc = result.ctc_tracks
        typer.echo(f"{len(ctc)} tracks, {len(result.divisions)} divisions, "
                   f"{result.tracks['t'].nunique()} frames -> {output}")


def track_learn_command(
    annotated: Path = typer.Argument(..., help="Annotated tracks: a CTC ground-truth folder (…/01_GT or its TRA) "
                                               "or a curated CTC result folder."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the learned link model (JSON)."),
    max_gap: int = typer.Option(2, help="Missed frames a track may bridge, as when tracking."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model file."),
) -> None:
    """Learn a link cost (same cell? daughter?) from annotated tracks; use it with `track --link-model`."""
    from cytolens.errors import OutputExistsError
    from cytolens.track.learned import fit_link_model_ctc

    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} exists; pass --overwrite to replace it")
    model = fit_link_model_ctc(annotated, config={"max_gap": max_gap})
    model.save(output)
    divisions = "with" if model.division is not None else "without (too few annotated divisions)"
    typer.echo(f"learned link model {divisions} a division part -> {output}")


def register(app: typer.Typer) -> None:
    """Add the ``track`` and ``track-learn`` commands to ``app``."""
    app.command("track")(user_errors(track_command))
    app.command("track-learn")(user_errors(track_learn_command))
