"""Image restoration: supervised (CARE-style) restoration, Noise2Void denoising, label-free prediction.

One task (``task: restoration`` in a training config) with two modes:

* ``supervised``: a U-Net regresses target images from source images (pairs of files
  with the same stem): denoising against clean averages (CARE, Weigert et al. 2018), or
  label-free prediction of fluorescence from transmitted light (Ounkomol et al. 2018;
  Christiansen et al. 2018), a z-stack given as channels ("planes as channels").
* ``noise2void``: self-supervised denoising from the noisy images alone (Krull et al.
  2019), with N2V2's fixes (Höck et al. 2022): median replacement of the blind-spot
  pixels, max-blur-pool and no top skip connection.

``config.py`` (the training config), ``task.py`` (the :class:`~cytolens.train.task.Task`),
``training.py`` (samples, masking, losses, validation), ``inference.py`` (restore an image
with a package, tiled).
"""
