"""A worker process: take queued jobs from the store, run them, record progress and results.

Started by the server (``python -m cytolens.server.worker --data-dir D --worker-id W``). A job's
inputs are ``<data-dir>/jobs/<id>/in/<name>``; each attempt writes into its own folder
``attempt-<n>`` through :func:`cytolens.segment_files.segment_file` (what ``cytolens segment``
calls). The job is marked done only by the attempt that still holds it (the store checks the attempt
number) and its files are served from that attempt's folder: a retried job never writes twice into the
same files, and a worker that outlived its server cannot mark a retried job done. The worker exits
when its parent (the server) exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
import warnings
from pathlib import Path

from cytolens.errors import CytolensError, ImageReadError, InvalidImageError
from cytolens.server.store import JobStore

#: how often an idle worker looks for a queued job (seconds)
POLL_SECONDS = 0.2


def job_folder(data_dir: Path, job_id: str) -> Path:
    return Path(data_dir) / "jobs" / job_id


def output_folder(data_dir: Path, job: dict) -> Path:
    """Where a done job's files are: the folder of the attempt that finished it."""
    return job_folder(data_dir, job["id"]) / f"attempt-{job['attempts']}"


def run_job(store: JobStore, data_dir: Path, job: dict, dask: str | None = None) -> None:
    """Run one claimed job to its end: done (outputs listed), failed (the error), or dropped when cancelled."""
    parent = os.getppid()
    from cytolens.segment_files import SegmentSettings, prepare, segment_file

    folder = job_folder(data_dir, job["id"])
    attempt = job["attempts"]
    work = folder / f"attempt-{attempt}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    inputs = [folder / "in" / name for name in job["inputs"]]
    errors = []
    try:
        package, settings = prepare(job["model"], SegmentSettings(**job["settings"]))
        if dask:
            from cytolens.distributed import segment_files_on_dask

            for path, _info, error in segment_files_on_dask(inputs, work, job["model"], settings, address=dask):
                if error is not None:
                    errors.append(f"{path.name}: {error}")
        else:
            for done, path in enumerate(inputs):
                if os.getppid() != parent:  # the server is gone: leave the job to the next start
                    shutil.rmtree(work, ignore_errors=True)
                    return
                if not store.progress(job["id"], attempt, done / len(inputs), f"segmenting {path.name}"):
                    shutil.rmtree(work, ignore_errors=True)  # cancelled meanwhile
                    return
                try:
                    with warnings.catch_warnings():  # the run's warnings are the CLI's business, not the log's
                        warnings.simplefilter("ignore")
                        segment_file(path, work, package, settings)
                except (ImageReadError, InvalidImageError) as exc:
                    errors.append(f"{path.name}: {exc}")
    except CytolensError as exc:
        store.fail(job["id"], attempt, str(exc))
        shutil.rmtree(work, ignore_errors=True)
        return
    if len(errors) == len(inputs):
        store.fail(job["id"], attempt, "; ".join(errors))
        shutil.rmtree(work, ignore_errors=True)
        return
    outputs = sorted(p.name for p in work.iterdir())
    if not store.finish(job["id"], attempt, outputs, "; ".join(errors) or None):
        shutil.rmtree(work, ignore_errors=True)  # cancelled, or retried elsewhere: this attempt's files go
        return
    for earlier in folder.glob("attempt-*"):  # unfinished attempts of a worker that died
        if earlier != work:
            shutil.rmtree(earlier, ignore_errors=True)


def work_loop(data_dir: Path, worker_id: str, dask: str | None = None, once: bool = False) -> None:
    """Take and run jobs until the parent process exits (or after one job, with ``once``)."""
    store = JobStore(Path(data_dir) / "jobs.sqlite")
    parent = os.getppid()
    while os.getppid() == parent:
        job = store.claim(worker_id)
        if job is None:
            time.sleep(POLL_SECONDS)
            continue
        run_job(store, Path(data_dir), job, dask)
        if once:
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="cytolens server worker (started by cytolens serve)")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--dask", default=None)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("CYTOLENS_WORKER_THREADS", "1"))))
    work_loop(args.data_dir, args.worker_id, args.dask)


if __name__ == "__main__":
    main()
