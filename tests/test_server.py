"""The HTTP server as a real uvicorn process: jobs, byte-identical outputs, every refused request,
worker death and server restarts."""

from __future__ import annotations

import os
import signal
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("psutil")

from server_helpers import MODEL, Server, submit, wait_for, write_images

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("server"), "--token", TOKEN, "--max-upload-mb", "2")
    yield running
    running.stop()


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
        yield http


def test_job_files_are_the_cli_files(client, tmp_path):
    from typer.testing import CliRunner

    from cytolens.cli import app

    paths = write_images(tmp_path / "in", 2)
    response = submit(client, paths, {"overlay": True, "rois": True, "diameter": None})
    assert response.status_code == 201, response.text
    job = wait_for(client, response.json()["id"])
    assert job["state"] == "done" and job["progress"] == 1 and job["error"] is None, job
    cli = CliRunner().invoke(app, ["segment", *map(str, paths), "-o", str(tmp_path / "cli"), "-m", MODEL,
                                   "--overlay", "--rois", "-q"])
    assert cli.exit_code == 0, cli.output
    expected = sorted(p.name for p in (tmp_path / "cli").iterdir() if p.name != "segment_summary.csv")
    assert job["files"] == expected and len(expected) == 8
    for name in expected:
        body = client.get(f"/v1/jobs/{job['id']}/files/{name}")
        assert body.status_code == 200
        assert body.content == (tmp_path / "cli" / name).read_bytes(), name


def test_health_models_page_docs(server, client):
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["auth"] is True and health["workers"] >= 1
    models = client.get("/v1/models").json()["models"]
    assert MODEL in [m["name"] for m in models]
    assert {m["task"] for m in models} == {"segmentation"}  # only what `segment` can run: no classifier offered
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "drop" in page.text.lower()
    assert httpx.get(server.url + "/docs").status_code == 200
    assert "/v1/jobs" in httpx.get(server.url + "/openapi.json").json()["paths"]
    assert "access-control-allow-origin" not in client.options(
        "/v1/models", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}).headers


def _refused(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, message


def test_refused_requests(server, client, tmp_path):
    paths = write_images(tmp_path / "in", 1, shape=(64, 64))
    # no token, a wrong token, a wrong scheme
    _refused(httpx.get(server.url + "/v1/models"), 401, "Authorization: Bearer")
    _refused(httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer nope"}), 401, "token")
    _refused(httpx.get(server.url + "/v1/models", headers={"Authorization": f"Basic {TOKEN}"}), 401, "token")
    # an upload over the limit (2 MB here)
    big = [("files", ("big.tif", os.urandom(3_000_000), "image/tiff"))]
    _refused(client.post("/v1/jobs", files=big, data={"model": MODEL}), 413, "limit")
    # not an image, though named like one
    fake = [("files", ("fake.png", b"hello, not a PNG", "image/png"))]
    _refused(client.post("/v1/jobs", files=fake, data={"model": MODEL}), 415, "TIFF, PNG or JPEG")
    # unknown model, a model path (never a file system path), unknown task
    _refused(submit(client, paths, model="no_such_model"), 404, "/v1/models")
    _refused(submit(client, paths, model="blood-cells"), 404, "/v1/models")  # a classifier: not for `segment`
    _refused(submit(client, paths, model="../../etc"), 404, "/v1/models")
    _refused(client.post("/v1/jobs", files=[("files", (paths[0].name, paths[0].read_bytes()))],
                         data={"task": "dance", "model": MODEL}), 400, "segment")
    # bad params: an unknown key, a value of the wrong kind, a value out of range, not JSON
    _refused(submit(client, paths, {"diamter": 20}), 422, "diamter")
    _refused(submit(client, paths, {"tile_size": "big"}), 422, "tile_size")
    _refused(submit(client, paths, {"diameter": -3}), 400, "diameter must be a positive number")
    _refused(client.post("/v1/jobs", files=[("files", (paths[0].name, paths[0].read_bytes()))],
                         data={"model": MODEL, "params": "{oops"}), 422, "params")
    # file names that could reach the file system, or not images by name
    for name in ("../escape.tif", "a b.tif", ".hidden.tif", "cells.exe"):
        _refused(client.post("/v1/jobs", files=[("files", (name, paths[0].read_bytes()))], data={"model": MODEL}),
                 400, "file name")
    _refused(client.post("/v1/jobs", data={"model": MODEL}), 422, "files")
    # unknown job, a job id that is a path, unknown file of a real job
    _refused(client.get("/v1/jobs/" + "0" * 32), 404, "job ids")
    _refused(client.get("/v1/jobs/..%2F..%2Fjobs.sqlite"), 404)
    job = wait_for(client, submit(client, paths).json()["id"])
    for name in ("nope.csv", "..%2F..%2Fjobs.sqlite", "in", "cells0.tif"):
        _refused(client.get(f"/v1/jobs/{job['id']}/files/{name}"), 404)
    _refused(client.delete(f"/v1/jobs/{job['id']}"), 409, "already done")
    assert list((server_dir := _data_dir(server)).glob("jobs/*.upload")) == [], server_dir  # refused uploads gone


def _data_dir(server):
    import psutil

    args = psutil.Process(server.process.pid).cmdline()
    from pathlib import Path

    return Path(args[args.index("--data-dir") + 1])


def test_cancel(client, tmp_path):
    paths = write_images(tmp_path / "in", 6, shape=(192, 192))
    job_id = submit(client, paths).json()["id"]
    cancelled = client.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    time.sleep(1.0)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "cancelled" and job["files"] == []


def test_worker_killed_mid_job_is_retried_and_restart_resumes(tmp_path):
    data = tmp_path / "data"
    server = Server(data, "--workers", "1")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            paths = write_images(tmp_path / "in", 4, shape=(224, 224))
            job_id = submit(http, paths).json()["id"]
            wait_for(http, job_id, states=("running",))
            time.sleep(0.3)
            (worker,) = server.worker_pids()
            os.kill(worker, signal.SIGKILL)
            job = wait_for(http, job_id)
            assert job["state"] == "done" and job["attempts"] == 2 and len(job["files"]) == 8, job
            assert [p.name for p in (data / "jobs" / job_id).glob("attempt-*")] == ["attempt-2"]
            # queued jobs survive a server killed outright
            queued = [submit(http, paths[:1]).json()["id"] for _ in range(3)]
        server.kill()
        server = Server(data, "--workers", "1")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for job_id in queued:
                assert wait_for(http, job_id)["state"] == "done"
    finally:
        server.kill()
