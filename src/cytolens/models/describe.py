"""A model package in ~25 readable lines (``cytolens models info``); ``model.json`` holds the rest.

>>> text = describe("nuclei")
>>> text.splitlines()[0]
'nuclei 4.1: segmentation, schema contact_watershed'
>>> "parameters" in text and "license" in text
True
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from cytolens.models.package import read_meta, resolve

__all__ = ["describe", "weights_summary"]

#: state-dict entries that are statistics, not learned parameters (batch-norm running mean/var, counters)
_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
_WIDTH = 110
_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}


def weights_summary(weights: str | os.PathLike) -> tuple[int, str]:
    """``(number of learned parameters, dtype of the learned weights)`` of a ``weights.safetensors`` file,
    read from its header (no weights are loaded)."""
    from safetensors import safe_open

    count, dtypes = 0, set()
    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():
            if key.endswith(_STATISTICS):
                continue
            tensor = handle.get_slice(key)
            size = 1
            for side in tensor.get_shape():
                size *= side
            count += size
            dtypes.add(tensor.get_dtype())
    return count, "/".join(sorted(_DTYPES.get(dtype, dtype) for dtype in dtypes))


def _settings(values: dict, skip: tuple[str, ...] = (), scores: bool = False) -> str:
    """``{"a": 0.4, "b": 8}`` → ``"a 0.4, b 8"``: a mapping's plain numbers and strings (scores to 3 decimals)."""
    def number(value) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if scores else f"{value:g}"
        return str(value)

    return ", ".join(f"{key}\N{NO-BREAK SPACE}{number(value)}" for key, value in values.items()
                     if key not in skip and isinstance(value, (int, float, str)) and not isinstance(value, bool))


def _scores(values: dict) -> str:
    """Scores without their ``images`` count (shown apart) and without pooled variants (in ``--json``)."""
    return _settings({k: v for k, v in values.items() if not k.endswith("_pooled")}, skip=("images",), scores=True)


def describe(name_or_path: str | os.PathLike) -> str:
    """A readable summary of a model package: what it is, what it expects, how it was trained and scored."""
    folder = resolve(name_or_path)
    exported = None
    if folder.is_file():  # an exported network file carries the package's description and extras inside
        from cytolens.models.export import exported_format, load_exported

        exported = load_exported(folder)
        meta, fmt = exported.meta, exported_format(folder)
    else:
        meta = read_meta(folder)
    training, validation = meta.get("training") or {}, meta.get("validation") or {}
    lines = [f"{meta.get('name')} {meta.get('version', '1')}: {meta.get('task')}"
             + (f", schema {meta['schema']}" if meta.get("schema") else "")]

    def row(label: str, text) -> None:
        if text not in (None, "", {}, []):
            wrapped = textwrap.wrap(str(text), width=_WIDTH, initial_indent=f"  {label:<19}",
                                    subsequent_indent=" " * 21, break_on_hyphens=False)
            lines.extend(line.replace("\N{NO-BREAK SPACE}", " ") for line in wrapped)  # "name value" kept whole

    architecture = meta.get("architecture") or {}
    size = ""
    weights = folder / "weights.safetensors"
    if weights.is_file():
        count, dtype = weights_summary(weights)
        size = f": {count / 1e6:.1f} M parameters, {dtype} weights, {weights.stat().st_size / 1e6:.1f} MB"
    elif exported is not None:
        size = f": exported as {fmt}, {folder.stat().st_size / 1e6:.1f} MB"
    row("architecture", f"{architecture.get('name')}{size}")
    row("", _settings(architecture.get("args") or {}))
    put = meta.get("input") or {}
    row("input", f"{put.get('channels', 3)} channels, axes {put.get('axes', 'YXC')}"
        + (f"; {put['conversion']}" if put.get("conversion") else ""))
    normalization = meta.get("normalization") or {}
    row("normalization", f"{normalization.get('method', 'percentile')} {normalization.get('low', 1.0)} to "
        f"{normalization.get('high', 99.8)}")
    scale = meta.get("scale") or {}
    if "target_diameter" in scale:
        has_size_model = "size_model" in exported.extras if exported else (folder / "size_model.json").is_file()
        how = "by the size model" if has_size_model else "from a first pass"
        row("scale", f"objects resized to {scale['target_diameter']:g} px across; their diameter given, or "
            f"estimated {how}")
    row("post-processing", _settings(meta.get("postprocess") or {}))
    data = training.get("data") or {}
    for key, value in (data.items() if isinstance(data, dict) else [("data", data)]):
        row(f"training {key.replace('_', ' ')}", value)
    splits = training.get("split_sizes") or {}
    if splits:
        row("split", " / ".join(f"{n} {side}" for side, n in splits.items())
            + "".join(f"; {training[k]} {k.removeprefix('train_')}" for k in training
                      if k.startswith("train_") and k != "train_images_used" and isinstance(training[k], int)))
    if "epochs_run" in training:
        row("epochs", f"{training['epochs_run']} (best {training.get('best_epoch')}), seed {training.get('seed')}")
    row("best val", _scores(training.get("best_val") or {}))
    parent = training.get("parent")
    if isinstance(parent, dict):
        row("parent", f"{parent.get('name')} {parent.get('version', '')}".strip())
    if isinstance(validation, dict) and validation:  # the held-out scores benchmarks/ recorded
        row("scores", "; ".join(f"{k} {validation[k]}" if k != "data" else str(validation[k])
                                for k in ("data", "diameter") if validation.get(k)) or None)
        groups = {"overall": validation.get("overall") or {}, **(validation.get("per_modality") or {})}
        for group, values in groups.items():
            if isinstance(values, dict) and values:
                count = f" ({values['images']} images)" if "images" in values else ""
                row("", f"{group}{count}: {_scores(values)}")
    extras = []
    names = sorted(exported.extras) if exported else [extra.stem for extra in sorted(folder.glob("*.json"))
                                                        if extra.name not in ("model.json", "split.json")]
    for name in names:
        record = training.get(name)
        note = f" (threshold {record['threshold']})" if isinstance(record, dict) and "threshold" in record else ""
        extras.append(name + note)
    row("extras", ", ".join(extras))
    row("license", meta.get("license", "not stated"))
    row("package", Path(folder))
    lines.append(f"(the whole model.json: cytolens models info {name_or_path} --json)")
    return "\n".join(lines)
