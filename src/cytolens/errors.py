"""Errors a user can cause, each with a message that says what to do.

Every error raised on purpose by cytolens is a :class:`CytolensError`; the CLI
prints its message on one line and exits non-zero (an HTTP server, when there is
one, answers 4xx with it).
"""

from __future__ import annotations


class CytolensError(Exception):
    """Base class for every error a user of cytolens can cause."""


class ImageReadError(CytolensError):
    """A file is missing, is not an image, or cannot be decoded."""


class InvalidImageError(CytolensError):
    """An image has unsupported dimensions, is empty/constant, or holds NaNs."""


class InvalidParameterError(CytolensError, ValueError):
    """A parameter is out of range or of the wrong kind."""


class UnknownModelError(CytolensError):
    """A model name or path does not resolve to a model package."""


class InvalidModelError(CytolensError):
    """A model package is damaged, incomplete, or made for another version of cytolens."""


class OutputExistsError(CytolensError):
    """An output file exists and overwriting was not asked for."""


class TrainingDivergedError(CytolensError, FloatingPointError):
    """The training loss became infinite or NaN (usually a learning rate too high for the data).

    Also a :class:`FloatingPointError`, so code that catches that (a hyperparameter
    search pruning a diverging trial) keeps working.

    >>> raise TrainingDivergedError("training loss became nan at epoch 3, step 7; lower the learning rate")
    Traceback (most recent call last):
    ...
    cytolens.errors.TrainingDivergedError: training loss became nan at epoch 3, step 7; lower the learning rate
    """
