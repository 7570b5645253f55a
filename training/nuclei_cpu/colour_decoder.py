"""Fine-tune only the shallow decoder of `nuclei` on the stained (H&E-like, colour) train images.

Tried in session 15 (not adopted): the idea was a second, small set of decoder weights that
`segment` would use for colour images only, so fluorescence and bright-field results could not
change. Everything but the named modules keeps v4's weights (frozen, batch-norm statistics
fixed); the crops come from the 87 colour train images only (stain jitter 0.1), and the
validation loss and AP@0.5 of the training loop are measured on the 7 colour val images only.

Usage: python training/nuclei_cpu/colour_decoder.py WORK_DIR EPOCHS STEPS LR [MODULE_PREFIXES...]
(session 15: ``trained/colour_decoder.work 10 240 3e-4``, default modules ``decoders.2 decoders.3
upsamples.2 upsamples.3 head``, 180k of the 7.8 M parameters; ~1.6 s per step of 16 crops of
256² in bfloat16 on the 2 CPU cores). The loop's per-epoch rows are printed and kept in
WORK_DIR/history.csv; the best weights (lowest colour val loss) in WORK_DIR/best.safetensors.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from cytolens.models import load
from cytolens.tasks.segmentation.training import CropSampler, make_loss, make_validator, prepare_data
from cytolens.train.config import load_config
from cytolens.train.loop import LoopConfig, fit

HERE = Path(__file__).parent
SHALLOW_DECODER = ("decoders.2", "decoders.3", "upsamples.2", "upsamples.3", "head")


def freeze_all_but(model: torch.nn.Module, trainable: tuple[str, ...]) -> None:
    """Only parameters whose names start with one of ``trainable`` get gradients; every other
    batch-norm keeps its statistics (eval mode). Unlike ``cytolens.train.transfer.freeze_encoder_hook``,
    which freezes the encoder for some epochs, this names what trains, for the whole run."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(trainable))
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d) and not name.startswith(trainable):
            module.eval()


def main() -> None:
    work, epochs, steps, learning_rate = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    trainable = tuple(sys.argv[5:]) or SHALLOW_DECODER
    config = load_config(HERE / "swa.yaml")  # v4's data, split and augmentation settings
    data = prepare_data(config, progress=False)
    train = [s for s in data.side("train") if s.stratum.startswith("color")]
    val = [s for s in data.side("val") if s.stratum.startswith("color")]
    network = load("nuclei").network.float()
    loss_fn = make_loss("contact_watershed")
    aug = config.augmentation
    sampler = CropSampler(train, "contact_watershed", 256, 16, steps, aug.flips, aug.rotations, aug.scale_range,
                          aug.intensity, None, seed=15, gamma=aug.gamma, blur=aug.blur, stain=0.1, workers=0)
    validate = make_validator(val, "contact_watershed", loss_fn, size_divisor=16)
    with torch.no_grad():
        print("v4 on the colour val images:", validate(network.eval()), flush=True)

    def freeze_all_but_trainable(model: torch.nn.Module, epoch: int) -> None:
        freeze_all_but(model, trainable)  # every epoch: the loop puts the model back in train mode

    freeze_all_but_trainable(network, 0)
    print(f"{len(train)} colour train images, {len(val)} val; trainable parameters:",
          sum(p.numel() for n, p in network.named_parameters() if n.startswith(trainable)), flush=True)
    loop = LoopConfig(epochs=epochs, optimizer="adam", learning_rate=learning_rate, weight_decay=1e-5,
                      schedule="cosine", warmup_epochs=0, patience=0, seed=15, max_minutes=95, device="cpu",
                      precision="bfloat16")
    fit(network, loss_fn, sampler, validate, loop, work, progress=False, on_epoch_start=freeze_all_but_trainable,
        on_epoch_end=lambda row: print(row, flush=True))


if __name__ == "__main__":
    main()
