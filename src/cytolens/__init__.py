"""cytolens: deep learning for cellular image analysis.

>>> import cytolens
>>> labels = cytolens.segment(image)  # doctest: +SKIP
"""

from cytolens.api import classify, embed, finetune, measure, restore, segment, train_denoiser
from cytolens.errors import CytolensError

__version__ = "0.1.0"

__all__ = ["CytolensError", "__version__", "classify", "embed", "finetune", "measure", "restore", "segment", "train_denoiser"]
