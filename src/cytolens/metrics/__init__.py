"""Honest scores against ground truth (no torch here).

* :mod:`~cytolens.metrics.segmentation`: instance matching, AP, DSB2018 score, panoptic
  quality, aggregated Jaccard index, pixel Dice/Jaccard, Caicedo et al. error counts.
* :mod:`~cytolens.metrics.classification`: confusion matrix, per-class and averaged scores.
* :mod:`~cytolens.metrics.restoration`: PSNR, SSIM, NRMSE, Pearson r (CARE convention optional).
* :mod:`~cytolens.metrics.tracking`: Cell Tracking Challenge SEG, DET, TRA, LNK and division scores.
"""

from cytolens.metrics.classification import ClassificationScores, classification_scores, confusion_matrix
from cytolens.metrics.restoration import care_normalize, nrmse, pearson_r, psnr, restoration_scores, ssim
from cytolens.metrics.segmentation import (
    KAGGLE_THRESHOLDS,
    Matching,
    ObjectErrors,
    PanopticQuality,
    aggregated_jaccard_index,
    average_precision,
    dsb2018_score,
    iou_matrix,
    match,
    match_iou_matrix,
    match_thresholds,
    mean_matched_iou,
    object_errors,
    panoptic_quality,
    pixel_dice,
    pixel_jaccard,
    pixel_scores,
)
from cytolens.metrics.tracking import (
    AOGM_WEIGHTS,
    AOGMCounts,
    AOGMWeights,
    DivisionScores,
    aogm_counts,
    ctc_evaluation,
    ctc_scores,
    division_scores,
    tracking_scores,
)

__all__ = [
    "AOGM_WEIGHTS",
    "KAGGLE_THRESHOLDS",
    "AOGMCounts",
    "AOGMWeights",
    "ClassificationScores",
    "DivisionScores",
    "Matching",
    "ObjectErrors",
    "PanopticQuality",
    "aggregated_jaccard_index",
    "aogm_counts",
    "average_precision",
    "care_normalize",
    "classification_scores",
    "confusion_matrix",
    "ctc_evaluation",
    "ctc_scores",
    "division_scores",
    "dsb2018_score",
    "iou_matrix",
    "match",
    "match_iou_matrix",
    "match_thresholds",
    "mean_matched_iou",
    "nrmse",
    "object_errors",
    "panoptic_quality",
    "pearson_r",
    "pixel_dice",
    "pixel_jaccard",
    "pixel_scores",
    "psnr",
    "restoration_scores",
    "ssim",
    "tracking_scores",
]
