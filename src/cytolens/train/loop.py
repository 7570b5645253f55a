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
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from cytolens.errors import InvalidParameterError


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
    overfit_gap: float = 0.5  # flag when (val_loss - train_loss) / train_loss exceeds this


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
    axes[0, 0].set(xlabel="epoch", ylabel="loss", title="loss")
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


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    validate: Callable[[torch.nn.Module], dict],
    config: LoopConfig,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    on_epoch_start: Callable[[torch.nn.Module, int], None] | None = None,
) -> list[dict]:
    """Train ``model`` and return the per-epoch history (see the module docstring).

    With ``resume=True`` and a ``last.pt`` in ``out_dir``, training continues
    from the epoch after the last completed one. ``on_epoch_start(model, epoch)``
    lets a caller freeze/unfreeze layers (transfer learning).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    optimizer = make_optimizer(model, config)
    history: list[dict] = []
    best_loss, best_epoch = math.inf, -1
    checkpoint = out_dir / "last.pt"
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = [dict(zip(state["history_keys"], row)) for row in state["history_rows"]]
        best_loss, best_epoch = state["best_loss"], state["best_epoch"]
        torch.set_rng_state(state["torch_rng"])
    start = time.monotonic()
    for epoch in range(len(history), config.epochs):
        if on_epoch_start is not None:
            on_epoch_start(model, epoch)
        lr = learning_rate_at(epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        tick, losses = time.monotonic(), []
        iterator = batches(epoch)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        for inputs, targets in iterator:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch + 1}; lower the learning rate")
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            scores = validate(model)
        train_loss = float(np.mean(losses)) if losses else float("nan")
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, **{k: float(v) for k, v in scores.items()}}
        row["overfitting"] = int((row["val_loss"] - train_loss) / max(abs(train_loss), 1e-12) > config.overfit_gap)
        row["seconds"] = time.monotonic() - tick
        history.append(row)
        if row["val_loss"] < best_loss:
            best_loss, best_epoch = row["val_loss"], epoch
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / "best.safetensors"))
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
        if progress:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
            print(f"epoch {epoch + 1}: {shown}", flush=True)
        if config.patience and epoch - best_epoch >= config.patience:
            if progress:
                print(f"early stopping: no val_loss improvement for {config.patience} epochs", flush=True)
            break
        if config.max_minutes is not None and (time.monotonic() - start) / 60 > config.max_minutes:
            if progress:
                print(f"stopping: time budget of {config.max_minutes} minutes reached", flush=True)
            break
    return history
