"""Load on ``cytolens serve`` over loopback: throughput, latency, a killed worker, a killed server.

Starts a real server (uvicorn, ``--workers W``) on 127.0.0.1, then:

1. **load**: ``--clients`` threads each submit ``--jobs`` jobs (one synthetic 128x128 image each,
   ``nuclei_fast``) one after the other, waiting for each to finish; reports jobs/s and the p50/p99
   of submit-to-done latency. Halfway through, one worker process is killed (SIGKILL) mid-job:
   every job must still end ``done`` (the killed worker's job retried, ``attempts`` = 2).
2. **restart**: ``--queued`` jobs are submitted, the server and its workers are killed outright
   (SIGKILL to the process group) while jobs are queued, a new server is started on the same data
   folder, and every job must end ``done``.

Bounded: at most 8 clients x 20 jobs, and ``--timeout`` seconds per phase. Loopback only.

Usage: python benchmarks/serve_load.py [--clients 4] [--jobs 5] [--workers 2] [--queued 6]
Writes benchmarks/results/serve_load.{md,csv}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine

RESULTS = Path(__file__).resolve().parent / "results"
SRC = Path(__file__).resolve().parents[1] / "src"
MODEL = "nuclei_fast"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data: Path, workers: int, port: int) -> subprocess.Popen:
    import httpx

    env = os.environ | {"PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, "-m", "cytolens", "serve", "--host", "127.0.0.1", "--port",
                                str(port), "--data-dir", str(data), "--workers", str(workers)], env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()["workers"] >= workers:
                return process
        except (httpx.HTTPError, KeyError, ValueError):
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def workers_of(process: subprocess.Popen) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(process.pid).children() if "cytolens.server.worker" in " ".join(c.cmdline())]


def submit(http, image: bytes) -> str:
    response = http.post("/v1/jobs", files=[("files", ("cells.tif", image, "image/tiff"))],
                         data={"model": MODEL, "params": "{}"})
    response.raise_for_status()
    return response.json()["id"]


def wait(http, job_id: str, deadline: float) -> dict:
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    return http.get(f"/v1/jobs/{job_id}").json()


def main() -> None:
    import httpx

    from cytolens.data.synthetic import synthetic_nuclei
    from cytolens.io import write_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=5, help="jobs per client")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queued", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    args.clients, args.jobs = min(args.clients, 8), min(args.jobs, 20)

    tmp = Path(tempfile.mkdtemp(prefix="serve_load_"))
    images = []
    for seed in range(args.clients):
        path = write_image(tmp / f"cells{seed}.tif", synthetic_nuclei(shape=(128, 128), n_nuclei=8, seed=seed)[0])
        images.append(path.read_bytes())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(tmp / "data", args.workers, port)
    rows, lock = [], threading.Lock()
    deadline = time.monotonic() + args.timeout
    half = threading.Event()

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for number in range(args.jobs):
                start = time.monotonic()
                job = wait(http, submit(http, images[index]), deadline)
                with lock:
                    rows.append({"client": index, "job": number, "state": job["state"],
                                 "attempts": job["attempts"], "latency_s": time.monotonic() - start})
                    if len(rows) >= args.clients * args.jobs // 2:
                        half.set()

    try:
        with httpx.Client(base_url=url, timeout=30) as http:  # warm-up: each worker loads the model once
            for job_id in [submit(http, images[0]) for _ in range(args.workers)]:
                wait(http, job_id, deadline)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        begin = time.monotonic()
        for thread in threads:
            thread.start()
        half.wait(args.timeout)
        killed = None
        pids = workers_of(server)  # under this load every worker is busy: kill one mid-job
        if pids:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - begin
        latencies = np.array([r["latency_s"] for r in rows])
        load = {"jobs": len(rows), "done": sum(r["state"] == "done" for r in rows),
                "retried": sum(r["attempts"] > 1 for r in rows), "killed_worker": killed,
                "throughput_jobs_per_s": len(rows) / elapsed, "p50_s": float(np.percentile(latencies, 50)),
                "p99_s": float(np.percentile(latencies, 99)), "elapsed_s": elapsed}
        # restart: jobs queued when the server dies outright are done after the next start
        with httpx.Client(base_url=url, timeout=30) as http:
            queued = [submit(http, images[i % len(images)]) for i in range(args.queued)]
            states = [http.get(f"/v1/jobs/{j}").json()["state"] for j in queued]
        kill_group(server)
        server = start_server(tmp / "data", args.workers, port)
        with httpx.Client(base_url=url, timeout=30) as http:
            final = [wait(http, j, time.monotonic() + args.timeout) for j in queued]
        restart = {"submitted": len(queued), "queued_or_running_at_kill": sum(s != "done" for s in states),
                   "done_after_restart": sum(j["state"] == "done" for j in final)}
    finally:
        kill_group(server)
    info = machine()
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "serve_load.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = (f"# serve_load\n\n`python benchmarks/serve_load.py --clients {args.clients} --jobs {args.jobs} "
            f"--workers {args.workers} --queued {args.queued}` (loopback; one 128x128 synthetic image per job, "
            f"model {MODEL}).\n\nMachine: {json.dumps(info)}\n\n"
            f"| jobs | done | retried (worker killed mid-job) | throughput (jobs/s) | p50 latency (s) | "
            f"p99 latency (s) |\n|---|---|---|---|---|---|\n| {load['jobs']} | {load['done']} | {load['retried']} | "
            f"{load['throughput_jobs_per_s']:.2f} | {load['p50_s']:.2f} | {load['p99_s']:.2f} |\n\n"
            f"Server killed (SIGKILL, with its workers) with {restart['queued_or_running_at_kill']} of "
            f"{restart['submitted']} jobs not yet done; after a restart on the same data folder "
            f"{restart['done_after_restart']} of {restart['submitted']} are done.\n")
    (RESULTS / "serve_load.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
