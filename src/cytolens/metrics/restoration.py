"""Image restoration scores: PSNR, SSIM, NRMSE, Pearson r, MSE, MAE.

Raw PSNR depends on the intensity scale of the prediction, so numbers computed on raw
network outputs are not comparable with published ones. The CARE convention (Weigert et
al. 2018, CSBDeep) first normalizes the target by its percentiles (0.1, 99.9) and then
rescales the prediction by the affine map that minimizes its squared error to the
normalized target; pass ``care=True`` (or call :func:`care_normalize`) to score that way.

``data_range`` (PSNR, SSIM) defaults to the target's ``max - min``, and to 1 (the span
between the normalizing percentiles) with ``care=True``; scikit-image instead uses the dtype's range for integer images, so pass
``data_range`` explicitly to reproduce a number computed with a different convention.
SSIM is scikit-image's ``structural_similarity`` (7x7 uniform window, K1 0.01, K2 0.03).

Example
-------
>>> rng = np.random.default_rng(0)
>>> target = rng.random((32, 32))
>>> s = restoration_scores(target, 2 * target + 5, care=True)
>>> round(s["pearson_r"], 6), round(s["nrmse"], 6)
(1.0, 0.0)
"""

from __future__ import annotations

import numpy as np

from cytolens.errors import InvalidImageError, InvalidParameterError

__all__ = ["care_normalize", "mae", "mse", "nrmse", "pearson_r", "percentile_normalize", "psnr",
           "restoration_scores", "ssim"]


def _pair(target, pred) -> tuple[np.ndarray, np.ndarray]:
    target, pred = np.asarray(target), np.asarray(pred)
    if target.shape != pred.shape:
        raise InvalidParameterError(f"target and prediction shapes differ: {target.shape} vs {pred.shape}")
    if target.size == 0:
        raise InvalidImageError("target and prediction are empty")
    for name, arr in (("target", target), ("prediction", pred)):
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
            raise InvalidParameterError(f"{name} must be a real-valued image, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise InvalidImageError(f"{name} holds NaN or infinite values")
    return target.astype(np.float64), pred.astype(np.float64)


def percentile_normalize(x: np.ndarray, pmin: float = 0.1, pmax: float = 99.9, eps: float = 1e-20) -> np.ndarray:
    """``(x - p_low) / (p_high - p_low)`` with the ``pmin`` / ``pmax`` percentiles of ``x`` (CSBDeep ``normalize``).

    Examples
    --------
    >>> percentile_normalize(np.arange(5.0), 0, 100).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if not 0 <= pmin < pmax <= 100:
        raise InvalidParameterError(f"need 0 <= pmin < pmax <= 100, got pmin={pmin}, pmax={pmax}")
    x = np.asarray(x, dtype=np.float64)
    lo, hi = np.percentile(x, [pmin, pmax])
    return (x - lo) / (hi - lo + eps)


def care_normalize(target: np.ndarray, pred: np.ndarray, pmin: float = 0.1, pmax: float = 99.9
                   ) -> tuple[np.ndarray, np.ndarray]:
    """CARE convention: percentile-normalize the target, then fit the prediction to it affinely.

    Returns ``(target_n, pred_n)`` where ``pred_n = a * pred + b`` minimizes
    ``mean((pred_n - target_n) ** 2)`` (CSBDeep ``normalize_minmse``; a constant prediction
    becomes the target's mean).

    Examples
    --------
    >>> t, p = care_normalize(np.array([0.0, 1, 2, 3]), np.array([10.0, 12, 14, 16]), 0, 100)
    >>> np.allclose(t, p)
    True
    """
    target, pred = _pair(target, pred)
    target_n = percentile_normalize(target, pmin, pmax)
    pc = pred - pred.mean()
    var = float(np.mean(pc * pc))
    alpha = float(np.mean(pc * (target_n - target_n.mean()))) / var if var > 0 else 0.0
    beta = target_n.mean() - alpha * pred.mean()
    return target_n, alpha * pred + beta


def mse(target: np.ndarray, pred: np.ndarray) -> float:
    """Mean squared error."""
    target, pred = _pair(target, pred)
    return float(np.mean((target - pred) ** 2))


def mae(target: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute error."""
    target, pred = _pair(target, pred)
    return float(np.mean(np.abs(target - pred)))


def _data_range(target: np.ndarray, data_range: float | None) -> float:
    if data_range is None:
        data_range = float(target.max() - target.min())
        if data_range == 0:
            raise InvalidImageError("the target is constant, so its data range is 0; pass data_range explicitly")
    if not data_range > 0:
        raise InvalidParameterError(f"data_range must be > 0, got {data_range}")
    return float(data_range)


def psnr(target: np.ndarray, pred: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range² / MSE)`` in dB (inf when identical).

    Examples
    --------
    >>> round(psnr(np.array([0.0, 1.0]), np.array([0.0, 0.9])), 3)  # MSE 0.005, range 1
    23.01
    """
    target, pred = _pair(target, pred)
    rng = _data_range(target, data_range)
    err = float(np.mean((target - pred) ** 2))
    return float("inf") if err == 0 else float(10 * np.log10(rng ** 2 / err))


def nrmse(target: np.ndarray, pred: np.ndarray, normalization: str = "euclidean") -> float:
    """Normalized root mean squared error, as scikit-image's ``normalized_root_mse``.

    ``normalization``: ``"euclidean"`` (RMSE / RMS of the target), ``"min-max"``
    (RMSE / target range) or ``"mean"`` (RMSE / target mean).

    Examples
    --------
    >>> nrmse(np.array([3.0, 4.0]), np.array([3.0, 4.0]))
    0.0
    """
    target, pred = _pair(target, pred)
    denom = {"euclidean": lambda: np.sqrt(np.mean(target * target)),
             "min-max": lambda: target.max() - target.min(),
             "mean": lambda: target.mean()}
    if normalization not in denom:
        raise InvalidParameterError(f"normalization must be one of {sorted(denom)}, got {normalization!r}")
    d = float(denom[normalization]())
    if d == 0:
        raise InvalidImageError(f"cannot normalize by the target's {normalization} norm: it is 0")
    return float(np.sqrt(np.mean((target - pred) ** 2)) / d)


def pearson_r(target: np.ndarray, pred: np.ndarray) -> float:
    """Pearson correlation of all pixels (NaN when either image is constant).

    Examples
    --------
    >>> pearson_r(np.array([1.0, 2, 3]), np.array([2.0, 4, 6]))
    1.0
    """
    target, pred = _pair(target, pred)
    t, p = target.ravel() - target.mean(), pred.ravel() - pred.mean()
    den = np.sqrt(np.dot(t, t) * np.dot(p, p))
    return float(np.clip(np.dot(t, p) / den, -1.0, 1.0)) if den > 0 else float("nan")


def ssim(target: np.ndarray, pred: np.ndarray, data_range: float | None = None, channel_axis: int | None = None,
         **kwargs) -> float:
    """Structural similarity (scikit-image ``structural_similarity``; ``kwargs`` go to it).

    Images must be at least 7 pixels along each spatial axis (the default window).

    Examples
    --------
    >>> x = np.linspace(0, 1, 64).reshape(8, 8)
    >>> ssim(x, x)
    1.0
    """
    from skimage.metrics import structural_similarity

    target, pred = _pair(target, pred)
    spatial = [s for i, s in enumerate(target.shape) if channel_axis is None or i != channel_axis % target.ndim]
    win = kwargs.get("win_size", 7)
    if min(spatial) < win:
        raise InvalidParameterError(f"SSIM needs images of at least {win} pixels per axis, got shape {target.shape}; "
                                    "pass win_size (odd, >= 3) for smaller images")
    return float(structural_similarity(target, pred, data_range=_data_range(target, data_range),
                                       channel_axis=channel_axis, **kwargs))


def restoration_scores(target: np.ndarray, pred: np.ndarray, care: bool = False, pmin: float = 0.1,
                       pmax: float = 99.9, data_range: float | None = None,
                       channel_axis: int | None = None) -> dict:
    """PSNR, SSIM, NRMSE, Pearson r, MSE and MAE of a restored image against its target.

    Parameters
    ----------
    target, pred : images of the same shape (any number of axes).
    care : score after :func:`care_normalize` (percentile-normalized target, affinely fitted
        prediction), the convention of published CARE numbers.
    pmin, pmax : percentiles of the CARE normalization.
    data_range : intensity range for PSNR / SSIM; default the target's max - min, or 1 with ``care``.
    channel_axis : the channel axis for SSIM, if any.

    Returns
    -------
    dict with ``psnr, ssim, nrmse, pearson_r, mse, mae, data_range, care``.
    """
    target, pred = _pair(target, pred)
    if care:
        target, pred = care_normalize(target, pred, pmin, pmax)
        data_range = 1.0 if data_range is None else data_range
    rng = _data_range(target, data_range)
    spatial_ok = min(s for i, s in enumerate(target.shape)
                     if channel_axis is None or i != channel_axis % target.ndim) >= 7
    return {"psnr": psnr(target, pred, rng),
            "ssim": ssim(target, pred, rng, channel_axis=channel_axis) if spatial_ok else float("nan"),
            "nrmse": nrmse(target, pred) if np.any(target) else float("nan"),
            "pearson_r": pearson_r(target, pred), "mse": mse(target, pred), "mae": mae(target, pred),
            "data_range": rng, "care": bool(care)}
