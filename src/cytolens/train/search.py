"""Hyperparameter search and learning curves, for any task with a training module.

:func:`tune` runs an optuna study (TPE sampler, median pruner on the per-epoch
validation metric) over learning rate, weight decay, network width and depth and
augmentation strength, and writes ``trials.csv``, ``tuning.png`` and
``best_config.yaml``.

:func:`learning_curve` trains the same config on growing, nested fractions of the
train split, scores every run on the same validation split, and writes
``learning_curve.csv`` and ``learning_curve.png`` with the validation metric and
the train-validation gap against the number of annotated images and objects. It
says whether the curve has *flattened*: the last step raised the metric by less
than ``threshold``, so more annotations of the same kind are unlikely to help much.

Both prepare the data once and reuse it for every run; every run gets the same
number of optimization steps (the config's epochs × steps_per_epoch).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cytolens.errors import InvalidParameterError
from cytolens.io import make_folder
from cytolens.train.api import ConfigLike, as_config
from cytolens.train.config import dump_config, save_config, validate_config
from cytolens.train.fitting import fit_model
from cytolens.train.task import task_for

#: Default search space: name -> (kind, low, high) or ("categorical", choices).
DEFAULT_SEARCH_SPACE: dict[str, tuple] = {
    "learning_rate": ("log", 1e-4, 1e-2),
    "weight_decay": ("log", 1e-6, 1e-2),
    "base_channels": ("categorical", [8, 16, 32]),
    "depth": ("int", 2, 5),
    "augmentation_strength": ("float", 0.0, 1.5),
}


def apply_params(config, params: dict):
    """A new validated config with search parameters applied (names as in :data:`DEFAULT_SEARCH_SPACE`)."""
    raw = dump_config(config)
    for name, value in params.items():
        if name in ("learning_rate", "weight_decay", "momentum", "batch_size", "crop_size", "steps_per_epoch",
                    "epochs"):
            raw["optimization"][name] = value
        elif name in ("base_channels", "depth", "dropout"):
            raw["architecture"][name] = value
        elif name == "augmentation_strength":
            raw["augmentation"] = dump_config(config.augmentation.scaled(float(value)))
        elif name in raw and not isinstance(raw[name], dict):
            raw[name] = value
        else:
            raise InvalidParameterError(f"unknown search parameter {name!r}")
    return validate_config(raw)


def _suggest(trial, name: str, spec: tuple):
    kind = spec[0]
    if kind == "log":
        return trial.suggest_float(name, spec[1], spec[2], log=True)
    if kind == "float":
        return trial.suggest_float(name, spec[1], spec[2])
    if kind == "int":
        return trial.suggest_int(name, spec[1], spec[2])
    if kind == "categorical":
        return trial.suggest_categorical(name, list(spec[1]))
    raise InvalidParameterError(f"search space entry {name!r}: kind must be log, float, int or categorical")


def _space_for(config, search_space: dict | None) -> dict:
    space = dict(DEFAULT_SEARCH_SPACE if search_space is None else search_space)
    if getattr(config, "init_from", None):  # the parent's weights fix the architecture
        space.pop("base_channels", None)
        space.pop("depth", None)
    if "depth" in space and space["depth"][0] == "int":  # crops must stay divisible by 2**depth
        crop = config.optimization.crop_size
        deepest = max(d for d in range(1, 7) if crop % 2**d == 0 and crop // 2**d >= 4)
        low, high = space["depth"][1], min(space["depth"][2], deepest)
        space["depth"] = ("int", min(low, high), high)
    return space


@dataclass
class TuneResult:
    table: pd.DataFrame
    best_params: dict
    best_value: float
    metric: str
    out_dir: Path
    best_config: Path
    plot: Path


def _cleanup(work: Path) -> None:
    for name in ("last.pt", "best.safetensors"):
        (work / name).unlink(missing_ok=True)


def tune(config: ConfigLike, trials: int = 20, out_dir: str | os.PathLike | None = None, *,
         search_space: dict | None = None, timeout_minutes: float | None = None, progress: bool = True,
         data=None) -> TuneResult:
    """Search hyperparameters with optuna; maximize the task's validation metric.

    Parameters
    ----------
    config : path, mapping or config
        The training config; its budget (epochs, steps) is used for every trial.
    trials : int
        Number of trials (pruned ones included).
    out_dir : path, optional
        Where results go; ``<output>.tune`` by default.
    search_space : dict, optional
        ``{name: ("log"|"float"|"int", low, high) | ("categorical", choices)}``; names from
        :data:`DEFAULT_SEARCH_SPACE`, any optimization/architecture setting, or a top-level one.
    timeout_minutes : float, optional
        Stop starting new trials after this long.
    data : optional
        Prepared data from the task's ``prepare_data`` (to share between calls).

    Returns
    -------
    TuneResult
        The trials table, the best parameters and value, and the written files.
    """
    import optuna

    if trials < 1:
        raise InvalidParameterError(f"trials must be at least 1, got {trials}")
    config = as_config(config)
    task = task_for(config)
    metric = task.primary_metric
    out = Path(out_dir) if out_dir is not None else Path(str(config.output) + ".tune")
    make_folder(out)
    space = _space_for(config, search_space)
    if data is None:
        data = task.prepare_data(config, progress)
    epochs = config.optimization.epochs
    study = optuna.create_study(
        direction="maximize", study_name=f"{config.name}-tune",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=min(3, max(1, trials // 3)),
                                           n_warmup_steps=max(1, epochs // 3)))
    curves: dict[int, list[float]] = {}

    def objective(trial) -> float:
        params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
        trial_config = apply_params(config, params)
        work = out / f"trial_{trial.number:03d}"
        curves[trial.number] = []

        def report(row: dict) -> None:
            value = float(row[metric])
            curves[trial.number].append(value)
            trial.report(value, row["epoch"] - 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric}={value:.4g} at epoch {row['epoch']} is below the median")

        tick = time.monotonic()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                result = fit_model(task, trial_config, data, progress=False, on_epoch_end=report,
                                   write_package=False, work_dir=work, resume=False)
            trial.set_user_attr("warnings", " | ".join(str(w.message) for w in caught))
        finally:
            _cleanup(work)
        value = float(result.best[metric])
        trial.set_user_attr("best_epoch", int(result.best["epoch"]))
        trial.set_user_attr("epochs_run", len(result.history))
        trial.set_user_attr("minutes", (time.monotonic() - tick) / 60)
        return value

    def announce(study, trial) -> None:
        if progress:
            shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
            value = "" if trial.value is None else f" {metric}={trial.value:.4f}"
            print(f"trial {trial.number + 1}/{trials} {trial.state.name.lower()}{value} ({shown})", flush=True)

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # `announce` prints one line per trial instead
    try:
        study.optimize(objective, n_trials=trials, catch=(FloatingPointError,), callbacks=[announce],
                       timeout=None if timeout_minutes is None else timeout_minutes * 60)
    finally:
        optuna.logging.set_verbosity(verbosity)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise InvalidParameterError(f"no tuning trial completed (of {len(study.trials)}); see {out} and lower the "
                                    "learning-rate range or raise the number of trials")
    table = study.trials_dataframe(attrs=("number", "value", "params", "state", "user_attrs", "duration"))
    table = table.rename(columns=lambda c: c.removeprefix("params_").removeprefix("user_attrs_"))
    table = table.rename(columns={"value": metric})
    table.to_csv(out / "trials.csv", index=False)
    best = study.best_trial
    best_config = save_config(apply_params(config, best.params).model_copy(update={"output": out / "best_model"}),
                              out / "best_config.yaml")
    plot = plot_tuning(table, metric, space, curves, out / "tuning.png")
    summary = {"metric": metric, "best_value": best.value, "best_params": best.params, "best_trial": best.number,
               "trials": len(study.trials), "completed": len(complete),
               "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
               "search_space": {k: list(v) for k, v in space.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if progress:
        print(f"best {metric}={best.value:.4f} with {best.params}; train it with: cytolens train {best_config}",
              flush=True)
    return TuneResult(table, dict(best.params), float(best.value), metric, out, best_config, plot)


def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_tuning(table: pd.DataFrame, metric: str, space: dict, curves: dict[int, list[float]], path: Path) -> Path:
    """Objective per trial (best so far), per-epoch curves (pruned runs stop early), metric vs each parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(space)
    n = 2 + len(names)
    cols = min(4, n)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(4 * cols, 3.3 * math.ceil(n / cols)), squeeze=False)
    axes = axes.ravel()
    done = table[table["state"] == "COMPLETE"]
    pruned = table[table["state"] == "PRUNED"]
    axes[0].plot(done["number"], done[metric], "o", label="complete")
    axes[0].plot(done["number"], done[metric].cummax(), "-", color="gray", label="best so far")
    if len(pruned):
        last = [curves.get(int(k), [np.nan])[-1] if curves.get(int(k)) else np.nan for k in pruned["number"]]
        axes[0].plot(pruned["number"], last, "x", color="tab:red", label="pruned (last epoch)")
    axes[0].set(xlabel="trial", ylabel=metric, title="tuning")
    axes[0].legend(fontsize=8)
    for number, values in curves.items():
        state = table.loc[table["number"] == number, "state"]
        style = "--" if len(state) and state.iloc[0] == "PRUNED" else "-"
        axes[1].plot(range(1, len(values) + 1), values, style, alpha=0.7)
    axes[1].set(xlabel="epoch", ylabel=metric, title="per-epoch validation (dashed: pruned)")
    for ax, name in zip(axes[2:], names):
        if name in done:
            ax.plot(done[name], done[metric], "o")
            if space[name][0] == "log":
                ax.set_xscale("log")
        ax.set(xlabel=name, ylabel=metric)
    for ax in axes[n:]:
        ax.axis("off")
    return _save_figure(fig, path)


@dataclass
class LearningCurveResult:
    table: pd.DataFrame
    flattened: bool | None
    message: str
    metric: str
    out_dir: Path
    plot: Path
    runs: list = field(default_factory=list)


def learning_curve(config: ConfigLike, fractions=(0.1, 0.25, 0.5, 1.0), out_dir: str | os.PathLike | None = None,
                   *, threshold: float = 0.02, progress: bool = True, data=None) -> LearningCurveResult:
    """Train on growing fractions of the train split and tell whether more annotation would help.

    Parameters
    ----------
    config : path, mapping or config
    fractions : sequence of float
        Increasing fractions of the train split, each subset containing the previous one.
    out_dir : path, optional
        ``<output>.learning_curve`` by default.
    threshold : float
        The curve has flattened when the last step raised the validation metric by less.
    data : optional
        Prepared data from the task's ``prepare_data``.

    Returns
    -------
    LearningCurveResult
        Per-run table (images, annotated units, validation and training metric, gap),
        the verdict and its message.
    """
    from cytolens.train.splits import nested_subsets

    config = as_config(config)
    task = task_for(config)
    metric, unit = task.primary_metric, task.unit
    train_metric = "train_" + metric.removeprefix("val_")
    out = Path(out_dir) if out_dir is not None else Path(str(config.output) + ".learning_curve")
    make_folder(out)
    if data is None:
        data = task.prepare_data(config, progress)
    subsets = nested_subsets(data.split["train"], fractions, config.seed)
    rows, runs = [], []
    for fraction, ids in zip(fractions, subsets):
        work = out / f"fraction_{float(fraction):g}"
        tick = time.monotonic()
        try:
            result = fit_model(task, config, data, progress=False, train_ids=ids, score_train=True,
                               write_package=False, work_dir=work, resume=False)
        finally:
            _cleanup(work)
        row = {"fraction": float(fraction), "images": result.n_train_images, unit: result.n_train_units,
               metric: float(result.best[metric]), train_metric: float(result.train_scores[train_metric]),
               "val_loss": float(result.best["val_loss"]), "train_loss": float(result.best["train_loss"]),
               "best_epoch": int(result.best["epoch"]), "epochs_run": len(result.history),
               "minutes": (time.monotonic() - tick) / 60}
        row["gap"] = row[train_metric] - row[metric]
        rows.append(row)
        runs.append(result)
        if progress:
            print(f"fraction {fraction:g}: {row['images']} images, {row[unit]} {unit}: {metric}={row[metric]:.4f}, "
                  f"{train_metric}={row[train_metric]:.4f}, gap={row['gap']:.4f}", flush=True)
    table = pd.DataFrame(rows)
    flattened, message = _verdict(table, metric, unit, threshold)
    table.to_csv(out / "learning_curve.csv", index=False)
    plot = plot_learning_curve(table, metric, train_metric, unit, message, out / "learning_curve.png")
    summary = {"metric": metric, "threshold": threshold, "flattened": flattened, "message": message,
               "rows": rows, "val_images": len(data.split["val"])}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if progress:
        print(message, flush=True)
    return LearningCurveResult(table, flattened, message, metric, out, plot, runs)


def _verdict(table: pd.DataFrame, metric: str, unit: str, threshold: float) -> tuple[bool | None, str]:
    if len(table) < 2:
        return None, "a learning curve needs at least two fractions to say whether it has flattened"
    a, b = table.iloc[-2], table.iloc[-1]
    train_metric = "train_" + metric.removeprefix("val_")
    if train_metric in table and table[train_metric].max() < 0.1:
        return None, (f"undecided: the model barely fits even its training images ({train_metric} at most "
                      f"{table[train_metric].max():.3f}), so the amount of data is not what limits it yet; raise the "
                      "training budget (optimization.epochs, steps_per_epoch) or check the labels, then rerun")
    gain = float(b[metric] - a[metric])
    step = (f"going from {int(a['images'])} to {int(b['images'])} training images ({int(a[unit])} to "
            f"{int(b[unit])} {unit}) changed {metric} by {gain:+.3f}")
    gaps = (table[train_metric] - table[metric]).iloc[-2:] if train_metric in table else None
    if gaps is not None and gain < threshold and (gaps.abs() < threshold).all():
        # high bias: the model does no better on its own training images than on unseen ones
        return True, (f"flattened: {step} (< {threshold}), and the model scores the same on its training images "
                      f"as on validation images (gap {gaps.iloc[-1]:+.3f}), so the model's capacity or training "
                      "budget limits it, not the amount of data; more annotations like these are unlikely to help, "
                      "a larger network or longer training may")
    drops = table[metric].diff().iloc[1:]
    if (drops < -threshold).any():
        worst = int(drops.idxmin())
        return None, (f"undecided: {metric} fell by {-drops.min():.3f} when the training set grew to "
                      f"{int(table.loc[worst, 'images'])} images, so run-to-run noise is larger than the effect of "
                      "data; raise the training budget (optimization.epochs, steps_per_epoch) so each run "
                      "converges, then rerun")
    if gain < threshold:
        return True, (f"flattened: {step} (< {threshold}); more annotations like these are unlikely to help much; "
                      "look at harder or more varied images, the model size or the training budget instead")
    return False, (f"not flattened: {step} (>= {threshold}); annotating more images is likely to improve the model")


def plot_learning_curve(table: pd.DataFrame, metric: str, train_metric: str, unit: str, message: str,
                        path: Path) -> Path:
    """Validation and training metric, and their gap, against the number of annotated units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    x = table[unit]
    axes[0].plot(x, table[metric], "o-", label=f"validation ({metric})")
    axes[0].plot(x, table[train_metric], "s--", label=f"training ({train_metric})")
    for xi, yi, n in zip(x, table[metric], table["images"]):
        axes[0].annotate(f"{int(n)} img", (xi, yi), textcoords="offset points", xytext=(4, -12), fontsize=8)
    axes[1].plot(x, table["gap"], "o-", color="tab:red")
    axes[1].axhline(0, color="gray", linewidth=0.8)
    from matplotlib.ticker import NullFormatter

    for ax in axes:
        if len(x) > 1 and x.max() / max(x.min(), 1) > 4:
            ax.set_xscale("log")
        ax.set_xticks(list(x), [str(int(v)) for v in x])
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set(xlabel=f"annotated {unit} in training", ylabel=metric, title="learning curve")
    axes[0].legend(fontsize=8)
    axes[1].set(xlabel=f"annotated {unit} in training", ylabel=f"{train_metric} - {metric}",
                title="train - validation gap")
    import textwrap

    fig.suptitle(textwrap.fill(message.split(";")[0], 120), fontsize=9)
    return _save_figure(fig, path)
