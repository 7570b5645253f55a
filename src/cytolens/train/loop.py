"""The one generic training loop: optimizer, schedule, early stopping, checkpoints, curves.

Nothing here knows about a task. A task supplies

* ``batches(epoch)`` — an iterable of ``(inputs, targets)`` tensors for one epoch;
* ``loss_fn(outputs, targets)`` — a scalar tensor;
* ``validate(model)`` — a dict with at least ``"val_loss"`` and any task metrics,
  computed on data the optimizer never sees.

Every epoch appends a row (epoch, lr, train_loss, val_loss, metrics, seconds) to
``history.csv``, redraws ``curves.png`` and writes ``last.pt`` (model, optimizer,
scheduler, history: enough to resume); ``best.safetensors`` holds the weights
with the lowest validation loss. Training stops early when the validation loss
has not improved for ``patience`` epochs.

The ``overfitting`` column is 1 for an epoch whose validation loss is more than
``overfit_tolerance`` (relative) above the best so far while the training loss is
still below its value at that best epoch: the model keeps fitting the training
images but gets worse on new ones. :func:`overfitting_report` turns the history
into a sentence that says so, and what to do.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from cytolens.errors import InvalidParameterError, TrainingDivergedError
from cytolens.io import make_folder
from cytolens.nn.precision import autocast_for
from cytolens.nn.registry import channels_last as channels_last_weights
from cytolens.nn.registry import channels_last_input
from cytolens.progress import ProgressCallback, ProgressEvent


@dataclass
class LoopConfig:
    """Optimization settings of :func:`fit` (validated by the caller's config model)."""

    epochs: int = 50
    optimizer: str = "adam"  # "adam" or "sgd"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-5
    schedule: str = "cosine"  # "cosine", "plateau" or "constant"
    warmup_epochs: int = 1
    patience: int = 10  # early stopping on val_loss; 0 disables it
    seed: int = 0
    max_minutes: float | None = None  # stop (and keep the best) after this wall time
    overfit_tolerance: float = 0.1  # flag when val_loss rises this much (relative) above its best
    device: str = "auto"  # "auto" (CUDA when available), "cpu" or "cuda"
    precision: str = "float32"  # "float32", or "bfloat16": mixed precision (bfloat16 compute, float32 weights)


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a ``device`` setting; asking for CUDA without a GPU is an error.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if name not in ("cpu", "cuda"):
        raise InvalidParameterError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python-side generators used by training (numpy, torch)."""
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: torch.nn.Module, config: LoopConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum,
                               weight_decay=config.weight_decay, nesterov=True)
    raise InvalidParameterError(f"optimizer must be 'adam' or 'sgd', got {config.optimizer!r}")


def learning_rate_at(epoch: int, config: LoopConfig) -> float:
    """Learning rate for ``epoch`` (0-based) under a warmup + cosine/constant schedule."""
    base = config.learning_rate
    if epoch < config.warmup_epochs:
        return base * (epoch + 1) / (config.warmup_epochs + 1)
    if config.schedule == "cosine":
        span = max(config.epochs - config.warmup_epochs, 1)
        progress = (epoch - config.warmup_epochs) / span
        return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))
    return base


def plot_history(rows: list[dict], path: Path) -> None:
    """Plot train/validation loss and every metric column against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    metric_keys = [k for k in rows[0] if k not in ("epoch", "lr", "train_loss", "val_loss", "seconds", "overfitting")]
    fig, axes = plt.subplots(1, 1 + bool(metric_keys), figsize=(5 + 5 * bool(metric_keys), 4), squeeze=False)
    axes[0, 0].plot(epochs, [r["train_loss"] for r in rows], label="train")
    axes[0, 0].plot(epochs, [r["val_loss"] for r in rows], label="validation")
    best = min(rows, key=lambda r: r["val_loss"])
    axes[0, 0].axvline(best["epoch"], color="gray", linestyle=":", label=f"best (epoch {best['epoch']})")
    flagged = [r["epoch"] for r in rows if r.get("overfitting")]
    for epoch in flagged:
        axes[0, 0].axvspan(epoch - 0.5, epoch + 0.5, color="tab:red", alpha=0.12, linewidth=0)
    title = "loss (red: overfitting)" if flagged else "loss"
    axes[0, 0].set(xlabel="epoch", ylabel="loss", title=title)
    axes[0, 0].legend()
    for key in metric_keys:
        axes[0, 1].plot(epochs, [r[key] for r in rows], label=key)
    if metric_keys:
        axes[0, 1].set(xlabel="epoch", title="validation metrics")
        axes[0, 1].legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _write_history(rows: list[dict], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _progress_callback(progress: bool | ProgressCallback | None) -> tuple[ProgressCallback | None, bool]:
    """``fit``'s ``progress`` as (callback or None, whether to draw a bar and print epoch lines).

    >>> _progress_callback(True), _progress_callback(None)
    ((None, True), (None, False))
    """
    if callable(progress):
        return progress, False
    return None, bool(progress)


def _epoch_bar(epoch_batches: Iterable, stage: str):
    """A tqdm bar over one epoch's batches, cleared when it closes."""
    from tqdm.auto import tqdm

    return tqdm(epoch_batches, desc=stage, leave=False)


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    validate: Callable[[torch.nn.Module], dict],
    config: LoopConfig,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool | ProgressCallback | None = True,
    on_epoch_start: Callable[[torch.nn.Module, int], None] | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` and return the per-epoch history (see the module docstring).

    With ``resume=True`` and a ``last.pt`` in ``out_dir``, training continues
    from the epoch after the last completed one. ``on_epoch_start(model, epoch)``
    runs after ``model.train()`` and lets a caller freeze/unfreeze layers (transfer
    learning); ``on_epoch_end(row)`` sees each history row once it is saved (a
    hyperparameter search reports it and may raise to prune the run).

    ``progress``: True draws a bar per epoch and prints each epoch's row; False or
    None is silent; a callable receives a :class:`~cytolens.progress.ProgressEvent`
    per step (stage ``"epoch 3/50"``, ``done`` = steps so far) and one per finished
    epoch (stage ``"epochs"``, the row in ``message``)::

        events = []
        fit(model, loss_fn, batches, validate, config, "work/", progress=events.append)
        events[-1].message   # 'epoch 50: lr=2e-05, train_loss=0.1, val_loss=0.12, ...'

    A loss that becomes infinite or NaN raises
    :class:`~cytolens.errors.TrainingDivergedError` (lower the learning rate).
    """
    callback, verbose = _progress_callback(progress)
    out_dir = Path(out_dir)
    make_folder(out_dir)
    seed_everything(config.seed)
    device = resolve_device(config.device)
    # oneDNN's CPU convolutions run ~1.5x faster on channels-last (NHWC) tensors, forward and backward
    channels_last = device.type == "cpu"
    model.to(device)
    if channels_last:
        channels_last_weights(model)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # training crops have one size: let cuDNN pick its fastest kernels
    autocast = autocast_for(config.precision, device)
    optimizer = make_optimizer(model, config)
    history: list[dict] = []
    best_loss, best_epoch = math.inf, -1
    checkpoint = out_dir / "last.pt"
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = [dict(zip(state["history_keys"], row)) for row in state["history_rows"]]
        best_loss, best_epoch = state["best_loss"], state["best_epoch"]
        torch.set_rng_state(state["torch_rng"].cpu())
    start = time.monotonic()
    for epoch in range(len(history), config.epochs):
        lr = learning_rate_at(epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        if on_epoch_start is not None:
            on_epoch_start(model, epoch)
        tick, losses = time.monotonic(), []
        stage = f"epoch {epoch + 1}/{config.epochs}"
        epoch_batches = batches(epoch)
        total_steps = len(epoch_batches) if hasattr(epoch_batches, "__len__") else None
        bar = _epoch_bar(epoch_batches, stage) if verbose else None
        step = 0
        try:
            for step, (inputs, targets) in enumerate(epoch_batches if bar is None else bar, start=1):
                inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                if channels_last:
                    inputs = channels_last_input(inputs)
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    outputs = model(inputs)
                loss = loss_fn(outputs.float(), targets)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(
                        f"training loss became {loss.item()} at epoch {epoch + 1}, step {step} "
                        f"(learning rate {lr:.3g}); lower the learning rate (optimization.learning_rate)")
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                if callback is not None:
                    callback(ProgressEvent(stage, step, total_steps, f"loss={losses[-1]:.4g}"))
        finally:
            if bar is not None:  # cleared before any error is printed, not left half-drawn
                bar.close()
        if callback is not None and total_steps is None and step:  # the stage's end, now that its length is known
            callback(ProgressEvent(stage, step, step, f"loss={losses[-1]:.4g}"))
        model.eval()
        with torch.no_grad(), autocast():
            scores = validate(model)
        train_loss = float(np.mean(losses)) if losses else float("nan")
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, **{k: float(v) for k, v in scores.items()}}
        row["overfitting"] = int(
            best_epoch >= 0 and row["val_loss"] > best_loss + config.overfit_tolerance * abs(best_loss)
            and train_loss < history[best_epoch]["train_loss"])
        row["seconds"] = time.monotonic() - tick
        history.append(row)
        if row["val_loss"] < best_loss:
            best_loss, best_epoch = row["val_loss"], epoch
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      str(out_dir / "best.safetensors"))
        keys = list(history[0])
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "history_keys": keys,
             "history_rows": [[r.get(k, float("nan")) for k in keys] for r in history],
             "best_loss": best_loss, "best_epoch": best_epoch, "torch_rng": torch.get_rng_state(),
             "loop_config": asdict(config)},
            out_dir / "last.tmp",
        )
        os.replace(out_dir / "last.tmp", checkpoint)
        _write_history(history, out_dir / "history.csv")
        plot_history(history, out_dir / "curves.png")
        shown = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
        if callback is not None:
            callback(ProgressEvent("epochs", epoch + 1, config.epochs, f"epoch {epoch + 1}: {shown}"))
        if verbose:
            print(f"epoch {epoch + 1}: {shown}", flush=True)
            if row["overfitting"] and not any(r["overfitting"] for r in history[:-1]):
                print(f"overfitting: validation loss {row['val_loss']:.4g} is above its best "
                      f"{best_loss:.4g} (epoch {best_epoch + 1}) while training loss keeps falling", flush=True)
        if on_epoch_end is not None:
            on_epoch_end(dict(row))
        stop_reason = None
        if config.patience and epoch - best_epoch >= config.patience:
            stop_reason = f"early stopping: no val_loss improvement for {config.patience} epochs"
        elif config.max_minutes is not None and (time.monotonic() - start) / 60 > config.max_minutes:
            stop_reason = f"stopping: time budget of {config.max_minutes} minutes reached"
        if stop_reason:
            if callback is not None:  # done == total: the "epochs" stage ends here
                callback(ProgressEvent("epochs", epoch + 1, epoch + 1, stop_reason))
            if verbose:
                print(stop_reason, flush=True)
            break
    if verbose and history:
        message = overfitting_report(history, config.overfit_tolerance)
        if message:
            print(message, flush=True)
    return history


def overfitting_report(history: list[dict], tolerance: float = 0.1) -> str | None:
    """A sentence about overfitting in a training history, or ``None`` when there is none.

    Overfitting is reported when the final validation loss is more than ``tolerance``
    (relative) above its best while the training loss went on falling after the best
    epoch. Works on any history from :func:`fit` (any task).

    Examples
    --------
    >>> rows = [{"epoch": e + 1, "train_loss": t, "val_loss": v}
    ...         for e, (t, v) in enumerate([(1.0, 1.0), (0.6, 0.7), (0.4, 0.8), (0.3, 0.9)])]
    >>> print(overfitting_report(rows))  # doctest: +ELLIPSIS
    overfitting: validation loss rose from 0.7 (epoch 2) to 0.9 (epoch 4) while training loss fell from 0.6 to 0.3; ...
    >>> overfitting_report(rows[:2]) is None
    True
    """
    if not history:
        return None
    best = min(history, key=lambda r: r["val_loss"])
    last = history[-1]
    if not (last["val_loss"] > best["val_loss"] + tolerance * abs(best["val_loss"])
            and last["train_loss"] < best["train_loss"]):
        return None
    return (f"overfitting: validation loss rose from {best['val_loss']:.4g} (epoch {best['epoch']}) to "
            f"{last['val_loss']:.4g} (epoch {last['epoch']}) while training loss fell from "
            f"{best['train_loss']:.4g} to {last['train_loss']:.4g}; the package keeps the weights of epoch "
            f"{best['epoch']}. To generalize better: annotate more images (see `cytolens learning-curve`), "
            "strengthen augmentation, raise architecture.dropout or optimization.weight_decay, "
            "or use a smaller network (architecture.base_channels/depth).")


@dataclass
class TrainResult:
    """What one training run produced (any task).

    ``best`` is the history row of the kept (lowest validation loss) epoch;
    ``train_scores`` the same task metrics measured on (up to a cap of) the training
    images with the kept weights, prefixed ``train_`` — their gap to ``best``'s
    ``val_`` metrics is the generalization gap. ``n_train_units`` counts what the
    task annotates (objects for segmentation, images for classification).
    """

    history: list[dict]
    best: dict
    work_dir: Path
    split_sizes: dict[str, int]
    n_train_images: int
    n_train_units: int
    package: Path | None = None
    train_scores: dict = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
