"""Start a real ``cytolens serve`` (uvicorn) process on a free loopback port, for the server tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cytolens.data.synthetic import synthetic_nuclei
from cytolens.io import write_image

MODEL = "nuclei_fast"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A ``cytolens serve`` subprocess; ``url``, ``stop()``, ``kill()``."""

    def __init__(self, data_dir: Path, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        src = str(Path(__file__).resolve().parents[1] / "src")
        env = os.environ | {"PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen([sys.executable, "-m", "cytolens", "serve", "--port", str(self.port),
                                         "--data-dir", str(data_dir), *args], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).json()["workers"] >= 1:
                    return
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start in time")

    def worker_pids(self) -> list[int]:
        import psutil

        return [c.pid for c in psutil.Process(self.process.pid).children() if "cytolens.server.worker" in
                " ".join(c.cmdline())]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # and whatever it left behind

    def kill(self) -> None:
        """SIGKILL the server and everything it started (its process group)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=20)
        self.process.stderr.close()


def write_images(folder: Path, count: int, shape=(128, 128), first_seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(first_seed, first_seed + count):
        image, _ = synthetic_nuclei(shape=shape, n_nuclei=max(4, shape[0] * shape[1] // 2000), seed=seed)
        paths.append(write_image(folder / f"cells{seed}.tif", image))
    return paths


def submit(client, paths, params: dict | None = None, model: str = MODEL):
    import json

    files = [("files", (p.name, p.read_bytes(), "image/tiff")) for p in paths]
    return client.post("/v1/jobs", files=files, data={"task": "segment", "model": model,
                                                      "params": json.dumps(params or {})})


def wait_for(client, job_id: str, states=("done", "failed", "cancelled"), timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")


__all__ = ["MODEL", "Server", "free_port", "np", "submit", "wait_for", "write_images"]
