"""One call from a movie, a label movie or a detection table to tracks."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cytolens.errors import InvalidImageError, InvalidParameterError
from cytolens.preprocess import select_channel
from cytolens.progress import ProgressCallback, reporter, tqdm_listener
from cytolens.track.config import TrackingConfig
from cytolens.track.consistency import merge_flickering_splits
from cytolens.track.costs import HandLinkCost, LinkCost
from cytolens.track.detections import as_label_movie, detect, detections_from_table, label_contacts, label_overlaps
from cytolens.track.learned import load_link_model
from cytolens.track.lineage import TrackingResult
from cytolens.track.linking import link


def _progress_callback(progress: ProgressCallback | bool | None) -> ProgressCallback | None:
    """A callback as given; ``True`` (as callers passed before callbacks) draws tqdm bars, ``False`` nothing."""
    if isinstance(progress, bool):
        return tqdm_listener() if progress else None
    return progress


def link_cost_for(config: TrackingConfig) -> LinkCost:
    """The link cost ``config`` names: the hand-made one, or the learned model read from ``config.link_model``.

    >>> type(link_cost_for(TrackingConfig())).__name__
    'HandLinkCost'
    """
    if config.link_cost == "learned":
        return load_link_model(config.link_model)
    return HandLinkCost()


#: input gamma for fluorescence movies (see :func:`segment_movie`)
FLUORESCENCE_MOVIE_GAMMA = 0.67


def segment_movie(movie: np.ndarray, *, model: str | os.PathLike = "nuclei", diameter: float | None = None,
                  progress: ProgressCallback | bool | None = None, merge_flicker: int = 2, gamma: float | None = None,
                  filter_objects: bool = False, precision: str = "float32", **postprocess) -> np.ndarray:
    """Segment each frame of a ``(T, Y, X[, C])`` movie with :func:`cytolens.segment`; returns ``(T, Y, X)`` labels.

    When ``diameter`` is None it is estimated once, as the median over the first,
    middle and last frames, and used for every frame: sizes stay consistent over
    time (which linking relies on) and each frame is segmented in one pass.
    Touching objects that are one object within ``merge_flicker`` frames before and
    after are merged (:func:`cytolens.track.consistency.merge_flickering_splits`; 0 = off).

    ``gamma`` None uses 0.67 for a dark-background (fluorescence) movie and 1 otherwise:
    live-cell nuclear markers show bright chromatin foci over a dim nucleoplasm, and
    tracking annotations (the Cell Tracking Challenge's) keep the whole nucleus, which
    the network cuts along the dim parts at gamma 1. On DSB2018 single images (val split,
    fluorescence) 0.67 costs 0.005 AP@0.5, so :func:`cytolens.segment` keeps 1.

    ``filter_objects`` is off for movies, unlike :func:`cytolens.segment`: the object filter
    was fitted on DSB2018 stills at gamma 1, and on the Cell Tracking Challenge movies it
    drops real nuclei (``benchmarks/tracking_ctc.py [--filter-objects]`` end to end, with it / without it:
    DET 0.985 / 0.988 on Fluo-N2DH-SIM+, 0.982 / 0.983 on Fluo-N2DH-GOWT1), and a nucleus
    missing from one frame breaks its track.

    ``precision="bfloat16"`` segments the frames in mixed precision (:mod:`cytolens.nn.precision`);
    the one diameter estimate stays float32.

    A blank frame (all pixels equal: a dropped or dark acquisition) gets no objects, with a
    warning; gap closing then carries the tracks over it.

    ``progress`` receives a :class:`~cytolens.progress.ProgressEvent` (stage ``"segmenting frames"``)
    per frame; ``True`` draws a tqdm bar.
    """
    import cytolens
    from cytolens.models import load
    from cytolens.nn.precision import check_precision
    from cytolens.tasks.segmentation.inference import estimate_diameter, has_dark_background

    check_precision(precision)  # before any frame is segmented
    movie = np.asarray(movie)
    if movie.ndim not in (3, 4):
        raise InvalidImageError(f"a movie must be (T, Y, X) or (T, Y, X, C); got shape {movie.shape}")
    if len(movie) < 2:
        raise InvalidImageError(f"tracking needs at least two frames; got {len(movie)}")
    package = load(model)
    # a blank frame (a dropped or dark acquisition) has no objects; the tracks bridge it by gap closing
    blank = {t for t in range(len(movie)) if movie[t].min() == movie[t].max()}
    shown = [t for t in range(len(movie)) if t not in blank]
    if not shown:
        raise InvalidImageError("every frame of the movie is blank (all pixels equal): there is nothing to track")
    if blank:
        warnings.warn(f"{len(blank)} blank frame(s) (all pixels equal) get no objects: frame(s) "
                      f"{', '.join(map(str, sorted(blank)[:5]))}{' ...' if len(blank) > 5 else ''}",
                      UserWarning, stacklevel=2)
    if gamma is None:
        gamma = FLUORESCENCE_MOVIE_GAMMA if has_dark_background(movie[shown[len(shown) // 2]]) else 1.0
    if diameter is None:
        estimates = [estimate_diameter(package, movie[t], gamma=gamma)
                     for t in sorted({shown[0], shown[len(shown) // 2], shown[-1]})]
        estimates = [d for d in estimates if d > 0]
        if not estimates:
            raise InvalidImageError("the model finds no objects in the first, middle and last frames")
        diameter = float(np.median(estimates))
    report = reporter(_progress_callback(progress), "segmenting frames", total=len(movie))
    frames, frame_warnings = [], []
    for t in range(len(movie)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frames.append(np.zeros(movie.shape[1:3], np.uint32) if t in blank else
                          cytolens.segment(movie[t], model=package, diameter=diameter, gamma=gamma,
                                           filter_objects=filter_objects, precision=precision, **postprocess))
        frame_warnings += [(t, w) for w in caught]
        report(t + 1)
    for message in per_movie_warnings(frame_warnings, len(movie)):
        warnings.warn(message, UserWarning, stacklevel=2)
    return merge_flickering_splits(np.stack(frames), max_frames=merge_flicker)


def per_movie_warnings(frame_warnings: list[tuple[int, warnings.WarningMessage]], n_frames: int) -> list[str]:
    """One line per kind of warning the frames raised (kinds differ in more than their numbers), not one per frame.

    >>> caught = [(t, warnings.WarningMessage(f"unsure ({50 + t}%)", UserWarning, "f", 1)) for t in (2, 5)]
    >>> per_movie_warnings(caught, 10)
    ['2 of 10 frames (the first: frame 2): unsure (52%)']
    """
    import re

    kinds: dict[str, list[tuple[int, str]]] = {}
    for t, caught in frame_warnings:
        message = str(caught.message)
        kinds.setdefault(re.sub(r"\d+(\.\d+)?", "#", message), []).append((t, message))
    return [f"{len({t for t, _ in seen})} of {n_frames} frames (the first: frame {seen[0][0]}): {seen[0][1]}"
            for seen in kinds.values()]


def track(movie: np.ndarray | None = None, *, labels: np.ndarray | Sequence[np.ndarray] | None = None,
          detections: pd.DataFrame | None = None, config: TrackingConfig | dict | None = None,
          model: str | os.PathLike = "nuclei", diameter: float | None = None, gamma: float | None = None,
          precision: str = "float32", channel: int | None = None,
          progress: ProgressCallback | bool | None = None, **settings) -> TrackingResult:
    """Follow every cell through a movie, divisions included.

    Give one of: ``movie`` alone (each frame is segmented with ``model``, then linked),
    ``labels`` (a label movie to link; ``movie`` then only supplies intensities), or
    ``detections`` (a table with ``t, y, x`` and optionally ``area``).

    Parameters
    ----------
    movie : ndarray, shape (T, Y, X) or (T, Y, X, C), optional
        Raw images.
    labels : ndarray (T, Y, X) or list of (Y, X) arrays, optional
        Integer label images, 0 = background; ids need not agree between frames.
    detections : DataFrame, optional
        One row per object per frame.
    config : TrackingConfig or dict, optional
        Linking settings; keyword ``settings`` override single fields (e.g. ``max_gap=0``).
        ``link_cost="learned"`` with ``link_model=path`` links with a learned cost
        (:func:`link_cost_for`).
    model, diameter, gamma, precision
        Segmentation model, object diameter, input gamma and network precision
        (:func:`segment_movie`), used only when segmenting ``movie``.
    channel : int, optional
        Use only this channel of a ``(T, Y, X, C)`` movie (e.g. the nuclear marker), for
        segmenting and for the intensities in the tracks table.
    progress : callable, optional
        Receives a :class:`~cytolens.progress.ProgressEvent` per frame segmented (stage
        ``"segmenting frames"``) and per pair of frames linked (``"linking"``); e.g.
        :func:`cytolens.progress.tqdm_listener`. ``True`` draws tqdm bars, ``False`` or None nothing.

    Returns
    -------
    TrackingResult
        ``.tracks`` table, ``.to_ctc(folder)``, ``.to_napari()``, ``.plot_lineage(path)``.

    Examples
    --------
    >>> movie = np.zeros((3, 20, 20), np.uint8)
    >>> for t in range(3):
    ...     movie[t, 2 + t:5 + t, 2:5] = 1; movie[t, 14:17, 10 + t:13 + t] = 2
    >>> result = track(labels=movie)
    >>> result.ctc_tracks.values.tolist()
    [[1, 0, 2, 0], [2, 0, 2, 0]]
    """
    cfg = TrackingConfig.from_kwargs(config, **settings)
    progress = _progress_callback(progress)
    if channel is not None:
        if movie is None:
            raise InvalidParameterError("channel= picks a channel of the movie; give the movie too")
        movie = np.asarray(movie)
        if movie.ndim != 4:
            raise InvalidImageError(f"channel={channel} needs a (T, Y, X, C) movie; got shape {movie.shape}")
        select_channel(movie[0], channel)  # checks the channel like segment(channel=) does
        movie = movie[..., channel]
    given = sum(x is not None for x in (labels, detections))
    if given > 1:
        raise InvalidParameterError("give either labels or detections, not both")
    if given == 0 and movie is None:
        raise InvalidParameterError("give a movie to segment, a label movie (labels=) or a detection table")
    cost = link_cost_for(cfg)
    if detections is not None:
        table = detections_from_table(detections)
        linked = link(table, cfg, cost=cost, progress=progress)
        return TrackingResult(linked, None, linked.attrs.get("config", {}))
    if labels is None:
        labels = segment_movie(movie, model=model, diameter=diameter, gamma=gamma, precision=precision,
                               progress=progress)
        if not np.asarray(labels).any():
            raise InvalidImageError("segmentation found no objects in any frame: check the model and the diameter")
    movie_labels = as_label_movie(labels)
    table = detect(movie_labels, movie)
    overlaps = label_overlaps(movie_labels, table) if cfg.use_overlap else None
    contacts = label_contacts(movie_labels, table) if cfg.use_overlap else None
    linked = link(table, cfg, overlaps=overlaps, contacts=contacts, cost=cost, progress=progress)
    return TrackingResult(linked, movie_labels, linked.attrs.get("config", {}))
