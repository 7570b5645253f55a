"""Honest scores against ground truth (no torch here)."""

from cytolens.metrics.segmentation import (
    KAGGLE_THRESHOLDS,
    Matching,
    average_precision,
    dsb2018_score,
    iou_matrix,
    match,
    match_thresholds,
)

__all__ = ["KAGGLE_THRESHOLDS", "Matching", "average_precision", "dsb2018_score", "iou_matrix",
           "match", "match_thresholds"]
