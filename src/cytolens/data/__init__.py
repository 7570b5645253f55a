"""Data sets: synthetic images and movies with exact ground truth."""

from cytolens.data.synthetic import synthetic_movie, synthetic_nuclei

__all__ = ["synthetic_movie", "synthetic_nuclei"]
