"""Data sets: synthetic images and movies with exact ground truth."""

from cytolens.data.synthetic import Mitosis, synthetic_movie, synthetic_nuclei

__all__ = ["Mitosis", "synthetic_movie", "synthetic_nuclei"]
