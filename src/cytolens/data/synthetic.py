"""Synthetic fluorescence nuclei images and time-lapse movies with exact ground truth.

The images imitate a widefield nuclear stain: elliptical nuclei of varied size,
orientation and brightness, some touching, with internal texture, on an uneven
background, blurred by a point spread function and corrupted by Poisson (shot)
and Gaussian (read) noise. Everything is drawn from ``numpy.random.default_rng(seed)``,
so the same arguments give the same arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import ndimage

from cytolens.errors import InvalidParameterError

__all__ = ["Mitosis", "synthetic_movie", "synthetic_nuclei"]

_GAP = 2  # pixels kept free around a nucleus that is not meant to touch another
_MIN_KEPT = 0.75  # a touching nucleus keeps at least this fraction of its ellipse
_BACKGROUND = 150.0  # mean background, photons per pixel
_BRIGHTNESS = 900.0  # mean nucleus signal above background, photons per pixel
_OFFSET = 100.0  # camera offset, counts
_READ_NOISE = 4.0  # camera read noise, counts


@dataclass(frozen=True)
class _Nucleus:
    """One elliptical nucleus: centre (y, x), semi-axes, orientation and boundary wobble."""

    label: int
    center: tuple[float, float]
    radii: tuple[float, float]  # semi-axis along ``angle``, semi-axis across it
    angle: float  # radians, direction of the first semi-axis in (y, x)
    wobble: tuple[tuple[float, float, float], ...]  # (harmonic, amplitude, phase)
    brightness: float

    def radius_towards(self, direction: float) -> float:
        """Distance from the centre to the (un-wobbled) boundary in a direction."""
        c, s = math.cos(direction - self.angle), math.sin(direction - self.angle)
        return 1.0 / math.hypot(c / self.radii[0], s / self.radii[1])

    def reach(self) -> float:
        """A radius that holds the whole nucleus, wobble included."""
        return max(self.radii) * (1.0 + sum(amp for _, amp, _ in self.wobble)) + 1.0

    def footprint(self, shape: tuple[int, int], margin: int = 0):
        """``(window, inside, profile)``: the slices of a window around the nucleus,
        its mask there, and a dome profile (1 at the centre, 0 at the edge)."""
        reach = self.reach() + margin
        cy, cx = self.center
        y0, y1 = max(int(cy - reach), 0), min(int(math.ceil(cy + reach)) + 1, shape[0])
        x0, x1 = max(int(cx - reach), 0), min(int(math.ceil(cx + reach)) + 1, shape[1])
        dy, dx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        dy -= cy
        dx -= cx
        u = (dy * math.cos(self.angle) + dx * math.sin(self.angle)) / self.radii[0]
        v = (-dy * math.sin(self.angle) + dx * math.cos(self.angle)) / self.radii[1]
        theta = np.arctan2(v, u)
        scale = 1.0 + sum(amp * np.cos(k * theta + phase) for k, amp, phase in self.wobble)
        q = (u * u + v * v) / scale**2
        inside = q <= 1.0
        profile = np.sqrt(np.clip(1.0 - q, 0.0, 1.0))
        return (slice(y0, y1), slice(x0, x1)), inside, profile


# --- validation ------------------------------------------------------------------------


def _check_shape(shape) -> tuple[int, int]:
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"shape must be two integers (Y, X), got {shape!r}") from None
    if len(shape) != 2 or min(shape) < 16:
        raise InvalidParameterError(f"shape must be two integers (Y, X), each at least 16, got {shape!r}")
    return shape


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidParameterError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _check_diameters(diameter_range, shape: tuple[int, int]) -> tuple[float, float]:
    try:
        low, high = (float(d) for d in diameter_range)
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"diameter_range must be two numbers (smallest, largest), got {diameter_range!r}") from None
    if not 4 <= low <= high <= min(shape) - 4:
        raise InvalidParameterError(
            f"diameter_range must satisfy 4 <= smallest <= largest <= min(shape) - 4 = {min(shape) - 4}, "
            f"got {diameter_range!r}; use a larger shape or smaller nuclei")
    return low, high


# --- drawing ---------------------------------------------------------------------------


def _random_nucleus(rng: np.random.Generator, label: int, diameter_range) -> _Nucleus:
    """A nucleus at (0, 0); both diameters lie in ``diameter_range``, the second at most the first."""
    low, high = diameter_range
    major = rng.uniform(low, high)
    minor = max(low, major * rng.uniform(0.6, 1.0))
    wobble = tuple((k, rng.uniform(0.0, 0.04), rng.uniform(0, 2 * math.pi)) for k in (2, 3, 5))
    return _Nucleus(label=label, center=(0.0, 0.0), radii=(major / 2, minor / 2),
                    angle=rng.uniform(0, math.pi), wobble=wobble, brightness=rng.uniform(0.5, 1.5))


def _random_center(rng: np.random.Generator, nucleus: _Nucleus, shape) -> tuple[float, float]:
    reach = nucleus.reach()
    return rng.uniform(reach, shape[0] - reach), rng.uniform(reach, shape[1] - reach)


def _fits(nucleus: _Nucleus, shape) -> bool:
    reach = nucleus.reach()
    (cy, cx) = nucleus.center
    return reach <= cy <= shape[0] - reach and reach <= cx <= shape[1] - reach


def _place_apart(labels: np.ndarray, nucleus: _Nucleus, ignore: int = 0):
    """The nucleus' mask (window-sized, with its window) if it keeps ``_GAP`` pixels from
    every other label (``ignore`` excepted), else None."""
    window, inside, _ = nucleus.footprint(labels.shape, margin=_GAP + 1)
    near = ndimage.binary_dilation(inside, iterations=_GAP)
    others = labels[window][near]
    if np.any((others != 0) & (others != ignore)):
        return None
    return window, inside


def _place_touching(labels: np.ndarray, nucleus: _Nucleus, neighbour: int):
    """The nucleus' free pixels if it keeps most of its ellipse, in one piece, and touches
    ``neighbour``; else None."""
    window, inside, _ = nucleus.footprint(labels.shape, margin=1)
    free = inside & (labels[window] == 0)
    if free.sum() < _MIN_KEPT * inside.sum():
        return None
    if ndimage.label(free)[1] != 1:
        return None
    touches = labels[window][ndimage.binary_dilation(free)] == neighbour
    return (window, free) if touches.any() else None


def _render(labels: np.ndarray, nuclei: list[_Nucleus], background: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """Fluorescence image of the labelled nuclei: dome profile x texture, PSF blur,
    Poisson-Gaussian noise; returned as uint16 counts."""
    signal = np.zeros(labels.shape, dtype=np.float64)
    for nucleus in nuclei:
        window, inside, profile = nucleus.footprint(labels.shape)
        own = inside & (labels[window] == nucleus.label)
        signal[window][own] = _BRIGHTNESS * nucleus.brightness * (0.55 + 0.45 * profile[own])
    texture = ndimage.gaussian_filter(rng.standard_normal(labels.shape), 1.5)
    texture /= texture.std() or 1.0
    signal *= np.clip(1.0 + 0.15 * texture, 0.5, 1.5)
    # point spread function: a sharp core plus a faint out-of-focus halo
    blurred = 0.85 * ndimage.gaussian_filter(signal, 1.2) + 0.15 * ndimage.gaussian_filter(signal, 5.0)
    photons = rng.poisson(background + blurred)
    counts = photons + _OFFSET + rng.normal(0.0, _READ_NOISE, labels.shape)
    return np.clip(np.rint(counts), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def _background(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A smooth, uneven background: a linear ramp in a random direction plus a broad bump."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    yy /= shape[0]
    xx /= shape[1]
    direction = rng.uniform(0, 2 * math.pi)
    ramp = yy * math.cos(direction) + xx * math.sin(direction)
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) or 1.0)
    cy, cx = rng.uniform(0.2, 0.8, size=2)
    bump = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.3**2))
    return _BACKGROUND * (0.6 + 0.6 * ramp + 0.4 * bump)


def _label_dtype(n_labels: int) -> type:
    return np.uint16 if n_labels <= np.iinfo(np.uint16).max else np.uint32


# --- public ----------------------------------------------------------------------------


def synthetic_nuclei(shape: tuple[int, int] = (512, 512), n_nuclei: int = 80,
                     diameter_range: tuple[float, float] = (12, 32), touching_fraction: float = 0.3,
                     seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic fluorescence image of nuclei and its exact label image.

    Parameters
    ----------
    shape : (int, int)
        Image size ``(Y, X)``, each at least 16.
    n_nuclei : int
        Number of nuclei asked for. Nuclei are placed one by one at random; when
        the image is too crowded for more, fewer are returned.
    diameter_range : (float, float)
        Smallest and largest diameter in pixels. Each nucleus is an ellipse (with a
        slightly wavy outline) whose two diameters both lie in this range.
    touching_fraction : float
        Fraction of nuclei, in [0, 1], placed against an existing nucleus so that
        the two share a border; the others keep a gap of at least 2 pixels.
    seed : int or None
        Seed of the random generator; the same seed gives the same arrays.

    Returns
    -------
    image : ndarray of uint16, shape (Y, X)
        Camera counts: uneven background plus nuclei, blurred, with Poisson and
        Gaussian noise.
    labels : ndarray of uint16 (uint32 above 65535 nuclei), shape (Y, X)
        0 = background; nuclei are numbered 1..n in the order they were placed, each
        one connected region.

    Raises
    ------
    InvalidParameterError
        A parameter is out of range.

    Examples
    --------
    >>> image, labels = synthetic_nuclei(shape=(64, 64), n_nuclei=3, seed=1)
    >>> image.dtype, labels.dtype, image.shape
    (dtype('uint16'), dtype('uint16'), (64, 64))
    >>> np.unique(labels).tolist()
    [0, 1, 2, 3]
    """
    shape = _check_shape(shape)
    n_nuclei = _check_count(n_nuclei, "n_nuclei")
    diameter_range = _check_diameters(diameter_range, shape)
    if not 0.0 <= float(touching_fraction) <= 1.0:
        raise InvalidParameterError(f"touching_fraction must be in [0, 1], got {touching_fraction!r}")
    rng = np.random.default_rng(seed)

    labels = np.zeros(shape, dtype=_label_dtype(n_nuclei))
    nuclei: list[_Nucleus] = []
    for _ in range(50 * n_nuclei):
        if len(nuclei) == n_nuclei:
            break
        label = len(nuclei) + 1
        nucleus = _random_nucleus(rng, label, diameter_range)
        if nuclei and rng.random() < touching_fraction:
            # push it against a random neighbour, overlapping a little; the overlap stays
            # with the neighbour, which flattens the shared border as in real tissue
            neighbour = nuclei[rng.integers(len(nuclei))]
            direction = rng.uniform(0, 2 * math.pi)
            distance = 0.85 * (neighbour.radius_towards(direction) + nucleus.radius_towards(direction))
            center = (neighbour.center[0] + distance * math.cos(direction),
                      neighbour.center[1] + distance * math.sin(direction))
            nucleus = replace(nucleus, center=center)
            placed = _place_touching(labels, nucleus, neighbour.label) if _fits(nucleus, shape) else None
        else:
            nucleus = replace(nucleus, center=_random_center(rng, nucleus, shape))
            placed = _place_apart(labels, nucleus)
        if placed is None:
            continue
        window, mask = placed
        labels[window][mask & (labels[window] == 0)] = label
        nuclei.append(nucleus)

    image = _render(labels, nuclei, _background(rng, shape), rng)
    return image, labels


@dataclass(frozen=True)
class Mitosis:
    """How nuclei divide in :func:`synthetic_movie`: each ``(low, high)`` range is drawn uniformly per division.

    With the defaults (fixed values) the mother keeps its size, and two daughters of 0.44 of
    its area appear either side of its centre along its long axis, touching, and then walk
    like every other nucleus. Wider ranges give the variety of real mitoses (condensing
    mothers, unequal daughters, daughters that separate late or fast), so that what is
    chosen on synthetic movies does not fit one kind of division.

    Attributes
    ----------
    condensation : (float, float)
        The mother's area in its last frame before it divides, relative to its usual area
        (below 1: chromatin condensing before the split).
    condensation_frames : (int, int)
        Frames over which the mother condenses (inclusive integer range).
    daughter_area : (float, float)
        Each daughter's area relative to the mother's usual area, drawn per daughter
        (unequal daughters when the range is wide).
    spacing : (float, float)
        Each daughter's centre from the daughters' midpoint, in the mother's long semi-axes
        (at least 0.85 of the daughter's own long semi-axis, so that daughters touch but stay whole).
    axis_turn : (float, float)
        Angle (radians, either sign) between the division axis and the mother's long axis.
    midpoint_shift : (float, float)
        Distance of the daughters' midpoint from the mother's last centre, in the mother's
        long semi-axes, in a random direction.
    held : (int, int)
        Frames the daughters move as one, in contact, before they may separate (late separation).
    separation_speed : (float, float)
        Pixels per frame each daughter moves away from its sister after that, on top of its walk,
        for ``separation_frames`` frames.
    separation_frames : int
        How long the daughters push apart.
    growth_frames : (int, int)
        Frames over which the daughters grow back to the mother's usual area (0 = they keep their size).
    """

    condensation: tuple[float, float] = (1.0, 1.0)
    condensation_frames: tuple[int, int] = (1, 1)
    daughter_area: tuple[float, float] = (0.44, 0.44)
    spacing: tuple[float, float] = (0.5, 0.5)
    axis_turn: tuple[float, float] = (0.0, 0.0)
    midpoint_shift: tuple[float, float] = (0.0, 0.0)
    held: tuple[int, int] = (0, 0)
    separation_speed: tuple[float, float] = (0.0, 0.0)
    separation_frames: int = 4
    growth_frames: tuple[int, int] = (0, 0)

    def __post_init__(self):
        for name in ("condensation", "condensation_frames", "daughter_area", "spacing", "axis_turn",
                     "midpoint_shift", "held", "separation_speed", "growth_frames"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise InvalidParameterError(f"Mitosis.{name} must be a range 0 <= low <= high, got {(low, high)!r}")
        for name in ("condensation", "daughter_area"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise InvalidParameterError(f"Mitosis.{name} must lie in (0, 1], got {(low, high)!r}")
        for name in ("condensation_frames", "held", "growth_frames"):
            if any(int(v) != v for v in getattr(self, name)):
                raise InvalidParameterError(f"Mitosis.{name} must be whole frames, got {getattr(self, name)!r}")
        if self.condensation_frames[0] < 1:
            raise InvalidParameterError("Mitosis.condensation_frames must be at least 1")
        if not (isinstance(self.separation_frames, int) and self.separation_frames >= 0):
            raise InvalidParameterError(f"Mitosis.separation_frames must be an integer >= 0, "
                                        f"got {self.separation_frames!r}")

    def draw(self, rng: np.random.Generator) -> dict:
        """One division's values."""
        def uniform(low_high):
            return float(rng.uniform(*low_high))

        def integer(low_high):
            return int(rng.integers(low_high[0], low_high[1] + 1))

        return {"condensation": uniform(self.condensation), "condensation_frames": integer(self.condensation_frames),
                "daughter_area": (uniform(self.daughter_area), uniform(self.daughter_area)),
                "spacing": uniform(self.spacing), "axis_turn": uniform(self.axis_turn) * rng.choice([-1.0, 1.0]),
                "midpoint_shift": uniform(self.midpoint_shift), "shift_direction": uniform((0.0, 2 * math.pi)),
                "held": integer(self.held), "separation_speed": uniform(self.separation_speed),
                "growth_frames": integer(self.growth_frames)}


def _scaled(nucleus: _Nucleus, radii: tuple[float, float], factor: float) -> _Nucleus:
    """The nucleus with ``radii`` scaled to ``factor`` of their area."""
    scale = math.sqrt(factor)
    return replace(nucleus, radii=(radii[0] * scale, radii[1] * scale))


def synthetic_movie(n_frames: int = 10, shape: tuple[int, int] = (256, 256), n_cells: int = 20,
                    divisions: int = 2, seed: int | None = 0,
                    diameter_range: tuple[float, float] = (12, 24), *, step: float = 1.5,
                    mitosis: Mitosis | None = None) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """A synthetic time-lapse of moving, dividing nuclei with ground-truth tracks.

    Nuclei take small random steps (never into each other); ``divisions`` times a
    nucleus divides into two daughters (by default touching; ``mitosis`` draws how each
    division looks). Labels follow the Cell Tracking Challenge convention: a label is one
    track, present in every frame from its ``begin`` to its ``end``; daughters get new
    labels with ``parent`` = the mother's label, and the mother's track ends the frame
    before they appear.

    Parameters
    ----------
    n_frames : int
        Number of frames (at least 1; at least 2 when ``divisions > 0``).
    shape : (int, int)
        Frame size ``(Y, X)``, each at least 16.
    n_cells : int
        Nuclei in the first frame (fewer when they do not fit).
    divisions : int
        Number of divisions, at random frames 1..n_frames-1 (fewer only when no
        nucleus that lived in the previous frame is left to divide, or, with ``mitosis``,
        when the daughters would not fit).
    seed : int or None
        Seed of the random generator; the same seed gives the same arrays.
    diameter_range : (float, float)
        Smallest and largest nucleus diameter in pixels in the first frame.
    step : float
        Standard deviation of each nucleus' random step per frame and axis (pixels).
    mitosis : Mitosis, optional
        How divisions look (condensing mothers, unequal daughters, late separation, ...);
        None keeps the plain division described above.

    Returns
    -------
    movie : ndarray of uint16, shape (T, Y, X)
        Camera counts, as from :func:`synthetic_nuclei`.
    labels : ndarray of uint16 (uint32 above 65535 tracks), shape (T, Y, X)
        0 = background; the same label in two frames is the same track.
    tracks : pandas.DataFrame
        One row per label with integer columns ``label, begin, end, parent``
        (``parent`` 0 for none), as in a CTC ``res_track.txt``.

    Raises
    ------
    InvalidParameterError
        A parameter is out of range.

    Examples
    --------
    >>> movie, labels, tracks = synthetic_movie(n_frames=4, shape=(96, 96), n_cells=4, divisions=1, seed=2)
    >>> movie.shape, labels.shape
    ((4, 96, 96), (4, 96, 96))
    >>> list(tracks.columns), int((tracks["parent"] > 0).sum())
    (['label', 'begin', 'end', 'parent'], 2)
    """
    n_frames = _check_count(n_frames, "n_frames")
    shape = _check_shape(shape)
    n_cells = _check_count(n_cells, "n_cells")
    divisions = _check_count(divisions, "divisions")
    diameter_range = _check_diameters(diameter_range, shape)
    if n_frames < 1:
        raise InvalidParameterError("n_frames must be at least 1")
    if divisions and n_frames < 2:
        raise InvalidParameterError("divisions happen between frames: use n_frames >= 2 or divisions=0")
    if not (isinstance(step, (int, float)) and math.isfinite(step) and step >= 0):
        raise InvalidParameterError(f"step must be a number >= 0, got {step!r}")
    if mitosis is not None and not isinstance(mitosis, Mitosis):
        raise InvalidParameterError(f"mitosis must be a Mitosis or None, got {type(mitosis).__name__}")
    rng = np.random.default_rng(seed)

    # first frame: nuclei apart from each other
    occupied = np.zeros(shape, dtype=_label_dtype(n_cells + 2 * divisions))
    alive: list[_Nucleus] = []
    for _ in range(50 * n_cells):
        if len(alive) == n_cells:
            break
        nucleus = _random_nucleus(rng, len(alive) + 1, diameter_range)
        nucleus = replace(nucleus, center=_random_center(rng, nucleus, shape))
        placed = _place_apart(occupied, nucleus)
        if placed is not None:
            window, mask = placed
            occupied[window][mask] = nucleus.label
            alive.append(nucleus)
    if divisions and not alive:
        raise InvalidParameterError("no nucleus fits in the first frame, so none can divide; use a larger shape")

    tracks = {n.label: {"label": n.label, "begin": 0, "end": 0, "parent": 0} for n in alive}
    division_frames = sorted(rng.integers(1, n_frames, size=divisions).tolist()) if divisions else []
    # with mitosis: each division's values, and the frame its mother starts to condense
    plans = [mitosis.draw(rng) for _ in division_frames] if mitosis is not None else []
    for frame, plan in zip(division_frames, plans):
        plan["frame"] = frame
        plan["condense_from"] = max(frame - plan["condensation_frames"], 1)
    usual = {n.label: n.radii for n in alive}  # each nucleus' radii at its usual size
    condensing: dict[int, dict] = {}  # mother label -> its plan
    behaviour: dict[int, dict] = {}  # daughter label -> held / separation / growth state
    next_label = len(alive) + 1
    sisters: dict[int, int] = {}  # daughter label -> the other daughter's label
    background = _background(rng, shape)
    movie = np.zeros((n_frames,) + shape, dtype=np.uint16)
    labels = np.zeros((n_frames,) + shape, dtype=_label_dtype(len(alive) + 2 * divisions))

    for t in range(n_frames):
        if t > 0:
            for plan in plans:  # mothers chosen when they start to condense
                if plan["condense_from"] == t and "mother" not in plan:
                    taken = set(condensing) | {p.get("mother") for p in plans}
                    mothers = [n for n in alive if tracks[n.label]["begin"] < t and n.label not in taken
                               and not _young(n.label, t, tracks, behaviour, mitosis)]
                    if mothers:
                        plan["mother"] = mothers[rng.integers(len(mothers))].label
                        condensing[plan["mother"]] = plan
            # everyone steps; a step is kept only if it stays apart from the others'
            # current positions (a sister may be touched if the step does not come
            # closer to her), otherwise the nucleus stays where it was. Daughters held
            # together step as one.
            stepped: set[int] = set()
            for i in range(len(alive)):
                if alive[i].label in stepped:
                    continue
                nucleus = alive[i]
                sister = next((n for n in alive if n.label == sisters.get(nucleus.label)), None)
                state = behaviour.get(nucleus.label)
                age = t - tracks[nucleus.label]["begin"]
                group = [i]
                if state is not None and sister is not None and age <= state["held"]:
                    group.append(alive.index(sister))
                for j in group:
                    occupied[occupied == alive[j].label] = 0
                radii = [_radii_now(alive[j], t, tracks, usual, condensing, behaviour) for j in group]
                for _ in range(5):
                    move = rng.normal(0.0, step, size=2)
                    if len(group) == 1 and state is not None and sister is not None and (
                            state["held"] < age <= state["held"] + mitosis.separation_frames):
                        away = np.subtract(nucleus.center, sister.center)
                        move = move + state["separation_speed"] * away / max(float(np.linalg.norm(away)), 1e-9)
                    moved = [replace(alive[j], center=(alive[j].center[0] + move[0], alive[j].center[1] + move[1]),
                                     angle=alive[j].angle + rng.normal(0.0, 0.05), radii=r)
                             for j, r in zip(group, radii)]
                    ignore = 0
                    if len(group) == 1 and sister is not None and math.dist(moved[0].center, sister.center) >= \
                            math.dist(nucleus.center, sister.center):
                        ignore = sister.label
                    if all(_fits(m, shape) and _place_apart(occupied, m, ignore) is not None for m in moved):
                        for j, m in zip(group, moved):
                            alive[j] = m
                        break
                for j in group:
                    window, inside, _ = alive[j].footprint(shape)
                    occupied[window][inside & (occupied[window] == 0)] = alive[j].label
                    stepped.add(alive[j].label)
            for _ in range(division_frames.count(t)):
                if mitosis is None:
                    mothers = [n for n in alive if tracks[n.label]["begin"] < t]
                    if not mothers:
                        break
                    mother = mothers[rng.integers(len(mothers))]
                    plan = None
                else:
                    plan = next((p for p in plans if p["frame"] == t and "mother" in p and "done" not in p), None)
                    if plan is None:
                        break
                    plan["done"] = True
                    condensing.pop(plan["mother"])
                    mother = next(n for n in alive if n.label == plan["mother"])
                daughters = _daughters(mother, usual[mother.label], plan, next_label, rng)
                if plan is not None and not _room_for(occupied, mother, daughters, shape):
                    alive[alive.index(mother)] = replace(mother, radii=usual[mother.label])
                    continue  # no room to divide here: the mother carries on
                alive.remove(mother)
                occupied[occupied == mother.label] = 0
                tracks[mother.label]["end"] = t - 1
                sisters[next_label], sisters[next_label + 1] = next_label + 1, next_label
                for daughter, area in zip(daughters, plan["daughter_area"] if plan else (None, None)):
                    window, inside, _ = daughter.footprint(shape)
                    occupied[window][inside & (occupied[window] == 0)] = daughter.label
                    tracks[daughter.label] = {"label": daughter.label, "begin": t, "end": t, "parent": mother.label}
                    alive.append(daughter)
                    # the size it grows back to: the mother's, or its own when it does not grow
                    usual[daughter.label] = usual[mother.label] if plan and plan["growth_frames"] else daughter.radii
                    if plan is not None:
                        behaviour[daughter.label] = {"area": area, **{k: plan[k] for k in (
                            "held", "separation_speed", "growth_frames")}}
                next_label += 2
        for nucleus in alive:
            tracks[nucleus.label]["end"] = t
        labels[t] = occupied
        movie[t] = _render(occupied, alive, background, rng)

    table = pd.DataFrame(list(tracks.values()), columns=["label", "begin", "end", "parent"], dtype=np.int64)
    return movie, labels, table.sort_values("label", ignore_index=True)


def _daughters(mother: _Nucleus, usual: tuple[float, float], plan: dict | None, first_label: int,
               rng: np.random.Generator) -> tuple[_Nucleus, _Nucleus]:
    """The two daughters of ``mother`` (``plan`` None: the plain division)."""
    if plan is None:
        axis = (math.cos(mother.angle), math.sin(mother.angle))
        out = []
        for k, sign in enumerate((1, -1)):
            offset = sign * 0.5 * mother.radii[0]
            out.append(replace(mother, label=first_label + k,
                               center=(mother.center[0] + offset * axis[0], mother.center[1] + offset * axis[1]),
                               radii=(0.55 * mother.radii[0], 0.8 * mother.radii[1]),
                               brightness=mother.brightness * rng.uniform(0.9, 1.1)))
        return out[0], out[1]
    angle = mother.angle + plan["axis_turn"]
    axis = (math.cos(angle), math.sin(angle))
    shift = plan["midpoint_shift"] * usual[0]
    mid = (mother.center[0] + shift * math.cos(plan["shift_direction"]),
           mother.center[1] + shift * math.sin(plan["shift_direction"]))
    out = []
    for k, sign in enumerate((1, -1)):
        scale = math.sqrt(plan["daughter_area"][k])
        # at least nearly their own long semi-axis from the midpoint, so that they touch but stay whole
        offset = sign * max(plan["spacing"] * usual[0], 0.85 * usual[0] * scale)
        out.append(replace(mother, label=first_label + k, angle=angle,
                           center=(mid[0] + offset * axis[0], mid[1] + offset * axis[1]),
                           radii=(usual[0] * scale, usual[1] * scale),
                           brightness=mother.brightness * rng.uniform(0.9, 1.1)))
    return out[0], out[1]


def _young(label: int, t: int, tracks: dict, behaviour: dict, mitosis: Mitosis) -> bool:
    """A daughter still held to her sister or pushing away from her (too young to divide)."""
    state = behaviour.get(label)
    return state is not None and t - tracks[label]["begin"] <= state["held"] + mitosis.separation_frames + 1


def _radii_now(nucleus: _Nucleus, t: int, tracks: dict, usual: dict, condensing: dict,
               behaviour: dict) -> tuple[float, float]:
    """A nucleus' radii in frame ``t``: a mother condensing before it divides, a daughter growing back."""
    if nucleus.label in condensing:
        plan = condensing[nucleus.label]
        span = plan["frame"] - plan["condense_from"]
        done = (t - plan["condense_from"] + 1) / span if span > 0 else 0.0
        return _scaled(nucleus, usual[nucleus.label], 1.0 - (1.0 - plan["condensation"]) * min(done, 1.0)).radii
    state = behaviour.get(nucleus.label)
    if state is not None and state["growth_frames"] > 0:
        age = min(t - tracks[nucleus.label]["begin"], state["growth_frames"])
        area = state["area"] + (1.0 - state["area"]) * age / state["growth_frames"]
        return _scaled(nucleus, usual[nucleus.label], area).radii
    return nucleus.radii


def _room_for(occupied: np.ndarray, mother: _Nucleus, daughters, shape) -> bool:
    """Whether both daughters fit in the frame and keep most of their area once the mother is gone."""
    if not all(_fits(d, shape) for d in daughters):
        return False
    trial = occupied.copy()
    trial[trial == mother.label] = 0
    for daughter in daughters:
        window, inside, _ = daughter.footprint(shape)
        free = inside & (trial[window] == 0)
        if free.sum() < 0.6 * inside.sum() or ndimage.label(free)[1] != 1:
            return False
        trial[window][free] = daughter.label
    return True
