"""Progress reported through a callback, so a CLI bar, a server job or napari can each show it.

Long work (segmenting a folder, a movie, training) takes ``progress=`` : a callable that
receives a :class:`ProgressEvent` at each step. The CLI's bar is one such listener
(:func:`tqdm_listener`); an HTTP server stores the latest event of a job; a test collects
them in a list. ``None`` reports nothing.

>>> events = []
>>> report = reporter(events.append, "frames", total=2)
>>> report(1); report(2, "frame 2 of 2")
>>> [(e.stage, e.done, e.total) for e in events]
[('frames', 1, 2), ('frames', 2, 2)]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """One step of long work: ``done`` of ``total`` units (None when unknown) of ``stage``."""

    stage: str
    done: int
    total: int | None = None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        """``done / total``, or None when the total is unknown."""
        return None if not self.total else self.done / self.total


ProgressCallback = Callable[[ProgressEvent], None]


def reporter(callback: ProgressCallback | None, stage: str, total: int | None = None) -> Callable[..., None]:
    """A ``report(done, message="")`` function for one stage; it does nothing when ``callback`` is None."""
    def report(done: int, message: str = "") -> None:
        if callback is not None:
            callback(ProgressEvent(stage, done, total, message))
    return report


def tqdm_listener() -> ProgressCallback:
    """A callback that draws one tqdm bar per stage (what the CLI passes as ``progress``)."""
    from tqdm.auto import tqdm

    bars: dict[str, tqdm] = {}

    def listen(event: ProgressEvent) -> None:
        bar = bars.get(event.stage)
        if bar is None:
            bar = bars[event.stage] = tqdm(total=event.total, desc=event.stage, leave=False)
        bar.update(event.done - bar.n)
        if event.message:
            bar.set_postfix_str(event.message, refresh=False)
        if event.total is not None and event.done >= event.total:
            bar.close()
            del bars[event.stage]
    return listen
