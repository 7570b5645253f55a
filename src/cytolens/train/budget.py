"""Size a training run to a time budget: time a few steps of the network it will train, then count epochs.

Used by the runs a user starts with a budget in minutes rather than a number of epochs
(``train-denoiser``, ``finetune``): the cosine schedule then ends when the budget does.
"""

from __future__ import annotations

import time

import numpy as np


def _seconds_per_step(task, config, data, clock=time.perf_counter) -> float:
    """Time two training steps (after one warm-up) of the network the run will train, at its precision
    (``clock``: wall time, or ``time.process_time`` for CPU time)."""
    import torch

    from cytolens.nn.precision import autocast_for
    from cytolens.nn.registry import channels_last, channels_last_input
    from cytolens.train.fitting import network_for

    train = data.side("train")
    network = channels_last(network_for(task, config, data).train())
    autocast = autocast_for(config.optimization.precision, torch.device("cpu"))
    optimizer = torch.optim.Adam(network.parameters(), 1e-4)
    loss_fn = task.make_loss(config, train)
    batches = task.make_sampler(config, train)(0)
    times = []
    for _, (inputs, targets) in zip(range(3), batches):
        tick = clock()
        optimizer.zero_grad()
        with autocast():
            outputs = network(channels_last_input(inputs))
        loss_fn(outputs.float(), targets).backward()
        optimizer.step()
        times.append(clock() - tick)
    return float(np.mean(times[1:])) if len(times) > 1 else times[0]


def budgeted_epochs(task, config, data, minutes: float, validation_seconds: float = 1.0,
                    clock=time.perf_counter) -> tuple[int, float]:
    """Epochs of ``config.optimization.steps_per_epoch`` steps that fit in 90 % of ``minutes`` (from a timed
    step), so a cosine schedule ends when the budget does; also the seconds a step took. With
    ``clock=time.process_time`` the budget is CPU time (a fair budget on a shared machine)."""
    seconds = _seconds_per_step(task, config, data, clock)
    per_epoch = seconds * config.optimization.steps_per_epoch + validation_seconds
    return max(1, int(minutes * 60 * 0.9 / per_epoch)), seconds
