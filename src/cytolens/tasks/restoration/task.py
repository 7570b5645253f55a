"""The restoration task as the generic training run sees it (:class:`cytolens.train.task.Task`).

``supervised``: pairs of source and target files (same stems, same sizes), split like any
task's data (:func:`cytolens.train.splits.make_data_split`). ``noise2void``: the noisy
images alone; each image's bottom band of rows (``noise2void.val_band``) is held out for
validation, so even one image trains and validates on separate pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cytolens.io import list_images, read_image
from cytolens.tasks.restoration.config import RestorationTrainConfig
from cytolens.tasks.restoration.training import (
    BlindSpotSampler,
    RestorationSample,
    ShapeMismatchError,
    as_cyx,
    blind_spot_loss,
    largest_crop,
    normalize_pair,
    pearson,
    pixel_loss,
)
from cytolens.train.task import PreparedData

#: noise2void's smallest training region side, in pixels
MIN_N2V_SIDE = 16


def min_side(depth: int) -> int:
    """The smallest image side a U-Net of ``depth`` pooling steps restores (two pixels at its coarsest level)."""
    return 2 ** (depth + 1)


def _read_pair(source_path, target_path) -> tuple[np.ndarray, np.ndarray]:
    source = as_cyx(read_image(source_path), where=str(source_path))
    target = as_cyx(read_image(target_path), where=str(target_path))
    if source.shape[1:] != target.shape[1:]:
        raise ShapeMismatchError(f"source {source_path.name} is {source.shape[1]}x{source.shape[2]} px but its target "
                                 f"{target_path.name} is {target.shape[1]}x{target.shape[2]}: pairs must be "
                                 "registered images of the same size")
    return source, target


def _check_channels(samples: dict, what: str) -> None:
    counts = {name: getattr(s, what).shape[0] for name, s in samples.items()}
    if len(set(counts.values())) > 1:
        first = next(iter(counts))
        other = next(n for n, c in counts.items() if c != counts[first])
        raise ShapeMismatchError(f"{'source' if what == 'image' else 'target'} images differ in planes/channels: "
                                 f"{first} has {counts[first]}, {other} has {counts[other]}")


class RestorationTask:
    name = "restoration"
    config_model = RestorationTrainConfig
    primary_metric = "val_psnr"
    unit = "images"

    def preparation_key(self, config) -> tuple:
        return (config.mode, tuple(config.normalization), config.target_normalization,
                tuple(config.target_percentiles), config.noise2void.val_band,
                *(str(v) for _, v in config.data), config.seed)

    def prepare_data(self, config, progress: bool = True) -> PreparedData:
        if config.architecture.dims != 2:
            from cytolens.errors import InvalidParameterError

            raise InvalidParameterError("architecture.dims: restoration is 2D; give z-stacks as planes (channels) "
                                        "of a 2D network")
        if config.mode == "noise2void":
            return self._prepare_noise2void(config)
        from cytolens.train.splits import make_data_split

        split, files, _ = make_data_split(config)
        samples = {}
        for i in split["train"] + split["val"]:
            source, target = _read_pair(*files[i])
            samples[i] = RestorationSample(*normalize_pair(source, target, config))
        _check_channels(samples, "image")
        _check_channels(samples, "targets")
        return PreparedData(split, samples, files, self.preparation_key(config))

    def _prepare_noise2void(self, config) -> PreparedData:
        from cytolens.errors import InvalidParameterError

        folder = config.data.images
        if not folder.is_dir():
            raise InvalidParameterError(f"data.images: folder not found: {folder}")
        paths = list_images(folder)
        if not paths:
            raise InvalidParameterError(f"data.images: no images in {folder}")
        split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        samples, files = {}, {}
        for path in paths:
            image, _ = normalize_pair(as_cyx(read_image(path), where=str(path)), None, config)
            rows = image.shape[1]
            band = max(MIN_N2V_SIDE, round(rows * config.noise2void.val_band))
            if rows - band < MIN_N2V_SIDE or image.shape[2] < MIN_N2V_SIDE:
                raise ShapeMismatchError(f"{path.name} is {rows}x{image.shape[2]} px, too small for noise2void: it "
                                         f"needs at least {MIN_N2V_SIDE + band} rows and {MIN_N2V_SIDE} columns")
            stem = path.stem
            samples[stem] = RestorationSample(image[:, : rows - band], image[:, : rows - band])
            samples[stem + "@val"] = RestorationSample(image[:, rows - band:], image[:, rows - band:])
            split["train"].append(stem)
            split["val"].append(stem + "@val")
            files[stem] = files[stem + "@val"] = (path,)
        _check_channels(samples, "image")
        return PreparedData(split, samples, files, self.preparation_key(config))

    def network_channels(self, config, data) -> tuple[int, int]:
        first = data.samples[data.split["train"][0]]
        return first.image.shape[0], first.targets.shape[0]

    def make_loss(self, config, train_samples: Sequence):
        return blind_spot_loss(config.loss) if config.mode == "noise2void" else pixel_loss(config.loss)

    def make_sampler(self, config, train_samples: Sequence):
        from cytolens.train.sampler import CropSampler, TargetKind

        sampler = CropSampler.from_config(train_samples, config, TargetKind(paired_intensity=True),
                                          min_content=config.min_content)
        if config.mode != "noise2void":
            return sampler
        sampler.crop = largest_crop(train_samples, config.optimization.crop_size, 2**config.architecture.depth,
                                    MIN_N2V_SIDE)
        return BlindSpotSampler(sampler, config.noise2void.masked_fraction, config.noise2void.window, config.seed)

    def make_validator(self, config, samples: Sequence, loss_fn, train_samples: Sequence):
        if config.mode == "noise2void":
            return self._noise2void_validator(config, samples, loss_fn)
        from cytolens.nn.predictor import network_predictor
        from cytolens.preprocess import predict_tiled

        overlap = min(32, config.tile_size // 4)

        def validate(model) -> dict:
            predict = network_predictor(model)
            losses, errors, correlations = [], [], []
            for s in samples:
                out = predict_tiled(predict, s.image, s.targets.shape[0], tile_size=config.tile_size, overlap=overlap,
                                    size_divisor=2**config.architecture.depth)
                difference = out - s.targets
                losses.append(float(np.mean(np.abs(difference) if config.loss == "l1" else difference**2)))
                errors.append(float(np.mean(difference**2)))
                correlations.append(np.mean([pearson(o, t) for o, t in zip(out, s.targets)]))
            mse = float(np.mean(errors))
            return {"val_loss": float(np.mean(losses)), "val_psnr": float(10 * np.log10(1 / max(mse, 1e-12))),
                    "val_pearson": float(np.mean(correlations))}
        return validate

    def _noise2void_validator(self, config, samples, loss_fn):
        """The blind-spot loss on fixed masked crops of the held-out bands (the same masks every epoch)."""
        import torch

        from cytolens.tasks.restoration.training import blind_spot_inputs, blind_spot_mask

        generator = torch.Generator().manual_seed(config.seed + 1)
        batches = []
        for s in samples:
            inputs = torch.from_numpy(s.image[None])
            divisor = 2**config.architecture.depth
            height, width = (n // divisor * divisor for n in inputs.shape[2:])
            inputs = inputs[:, :, :height, :width].contiguous()
            mask = blind_spot_mask((1, height, width), config.noise2void.masked_fraction, generator)
            targets = torch.cat([inputs, mask.expand_as(inputs).float()], dim=1)
            batches.append((blind_spot_inputs(inputs, mask, config.noise2void.window), targets))

        def validate(model) -> dict:
            device = next(model.parameters()).device
            with torch.no_grad():
                losses = [float(loss_fn(model(x.to(device)).float(), t.to(device))) for x, t in batches]
            loss = float(np.mean(losses))
            # PSNR of the blind-spot predictions against the noisy pixels themselves (monotone in val_loss)
            return {"val_loss": loss, "val_psnr": float(10 * np.log10(1 / max(loss, 1e-12)))}
        return validate

    def adapt_to_parent(self, config, parent):
        if parent.meta.get("task") != "restoration":
            from cytolens.errors import InvalidParameterError

            raise InvalidParameterError(f"init_from: {parent.name} is a {parent.meta.get('task')} model, not a "
                                        "restoration model")
        return config

    def package_meta(self, config, train_samples: Sequence) -> dict:
        channels, outputs = train_samples[0].image.shape[0], train_samples[0].targets.shape[0]
        return {"input": {"channels": channels, "axes": "YX" if channels == 1 else "CYX",
                          "conversion": "a 2D image, or planes/channels first (planes as channels)"},
                "restoration": {"mode": config.mode, "loss": config.loss,
                                "target_normalization": config.target_normalization,
                                "target_percentiles": list(config.target_percentiles),
                                "output_channels": outputs, "output_names": config.output_names,
                                "min_side": min_side(config.architecture.depth),
                                "tile_size": config.tile_size}}

    def count_units(self, samples: Sequence) -> int:
        return len(samples)


TASK = RestorationTask()
