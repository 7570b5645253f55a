"""The HTTP API and web page (FastAPI), the worker supervisor, and :func:`serve` (uvicorn).

Endpoints (``/docs`` has the OpenAPI page):

* ``POST /v1/jobs`` — multipart form: ``files`` (one or more images), ``task`` (``segment``),
  ``model`` (a bundled model, ``GET /v1/models``), ``params`` (JSON object: the settings of
  ``cytolens segment``, see :class:`cytolens.segment_files.SegmentSettings`) → ``{"id": ...}``.
* ``GET /v1/jobs/{id}`` — ``id, state, progress, error, files`` (and more).
* ``GET /v1/jobs/{id}/files/{name}`` — one output, named and written as ``cytolens segment`` does.
* ``DELETE /v1/jobs/{id}`` — cancel. ``GET /v1/models``, ``GET /health``, ``GET /`` (the page).

Every error is a 4xx JSON ``{"error": "<what is wrong and what to do>"}``. Security: bearer tokens
when configured (compared in constant time), an upload limit, only images that decode, job ids and
file names checked against strict patterns before they name a path, only bundled models (their
weights are safetensors, never pickles), no CORS headers.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Depends, FastAPI, File, Form, Header, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cytolens.errors import CytolensError
from cytolens.server.store import JOB_ID, JobStore
from cytolens.server.worker import job_folder, output_folder

__all__ = ["ServerConfig", "create_app", "serve"]

#: an input or output file name: letters, digits, ``._-``, not starting with a dot
FILE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
TASKS = ("segment",)
#: the model task (``model.json``'s ``task``) each served task runs
MODEL_TASKS = {"segment": "segmentation"}
STATIC = Path(__file__).parent / "static"


@dataclass
class ServerConfig:
    """How ``cytolens serve`` runs (its options)."""

    data_dir: Path
    tokens: tuple[str, ...] = ()
    workers: int = 1
    max_upload_mb: float = 100.0
    max_pixels: int = 100_000_000
    max_attempts: int = 3
    dask: str | None = None
    start_workers: bool = True
    worker_threads: int = 1
    extra_env: dict = field(default_factory=dict)


class ApiError(Exception):
    """An HTTP error with a message that says what to do."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class Supervisor:
    """Keeps ``workers`` worker processes alive; a worker that dies has its job requeued (bounded) and is
    replaced."""

    def __init__(self, config: ServerConfig, store: JobStore) -> None:
        self.config, self.store = config, store
        self.processes: dict[str, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cytolens-supervisor", daemon=True)

    def _start_one(self) -> None:
        worker_id = f"w-{uuid.uuid4().hex[:12]}"
        command = [sys.executable, "-m", "cytolens.server.worker", "--data-dir", str(self.config.data_dir),
                   "--worker-id", worker_id] + (["--dask", self.config.dask] if self.config.dask else [])
        env = os.environ | {"CYTOLENS_WORKER_THREADS": str(self.config.worker_threads)} | self.config.extra_env
        self.processes[worker_id] = subprocess.Popen(command, env=env)

    def start(self) -> None:
        # jobs left running when the server stopped: back to the queue (their attempt counted)
        self.store.requeue_running(max_attempts=self.config.max_attempts)
        for _ in range(self.config.workers):
            self._start_one()
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for worker_id, process in list(self.processes.items()):
                if process.poll() is not None:
                    del self.processes[worker_id]
                    self.store.requeue_running(worker_id, self.config.max_attempts)
                    self._start_one()

    def alive(self) -> int:
        return sum(p.poll() is None for p in self.processes.values())

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values() if p.poll() is None]

    def stop(self) -> None:
        self._stop.set()
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


class UploadLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before it is read (Content-Length) or as
    soon as it passes the limit (streamed)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": f"upload too large: the limit is {self.limit / 1e6:.0f} MB per request; send "
                                    "fewer or smaller images per job"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(send)
        received = 0
        started = False

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._refuse(send)


class _TooLarge(Exception):
    pass


def _check_token(config: ServerConfig, authorization: str | None) -> None:
    if not config.tokens:
        return
    scheme, _, value = (authorization or "").partition(" ")
    matched = False
    for token in config.tokens:  # every token compared, each in constant time
        matched |= hmac.compare_digest(value.strip().encode(), token.encode())
    if scheme.lower() != "bearer" or not matched:
        raise ApiError(401, "missing or invalid token: send the header 'Authorization: Bearer <token>' with a "
                            "token the server was started with (cytolens serve --token)",
                       {"WWW-Authenticate": "Bearer"})


@functools.cache
def _bundled_models() -> dict[str, dict]:
    """The bundled models of the tasks this server runs (a classifier or a denoiser is not offered to ``segment``).

    Read once per process: bundled models are files of the installed package, fixed while it runs."""
    from cytolens.models import bundled_models, read_meta

    served = {MODEL_TASKS[task] for task in TASKS}
    return {name: meta for name in bundled_models() if (meta := read_meta(name)).get("task") in served}


def _job_view(job: dict) -> dict:
    return {"id": job["id"], "state": job["state"], "progress": job["progress"], "error": job["error"],
            "files": job["outputs"] if job["state"] == "done" else [], "task": job["task"], "model": job["model"],
            "inputs": job["inputs"], "message": job["message"], "attempts": job["attempts"]}


def create_app(config: ServerConfig):
    """The FastAPI app for ``config`` (its workers start with the app and stop with it)."""
    from cytolens.segment_files import SegmentSettings, prepare

    data_dir = Path(config.data_dir)
    (data_dir / "jobs").mkdir(parents=True, exist_ok=True)
    store = JobStore(data_dir / "jobs.sqlite")
    supervisor = Supervisor(config, store)

    @asynccontextmanager
    async def lifespan(app):
        if config.start_workers:
            supervisor.start()
        try:
            yield
        finally:
            supervisor.stop()

    app = FastAPI(title="cytolens", version=_version(), lifespan=lifespan,
                  description="Segment cells over HTTP with the same functions as the cytolens CLI.")
    app.state.store, app.state.supervisor = store, supervisor

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(CytolensError)
    async def _user_error(request, exc: CytolensError):
        return error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
        return error(422, "invalid request: " + "; ".join(parts) + " (see /docs for the form's fields)")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        hint = {404: "not found; the API lives under /v1 (see /docs)",
                405: "method not allowed here (see /docs)"}.get(exc.status_code, str(exc.detail))
        return error(exc.status_code, hint)

    def authorized(authorization: str | None = Header(None)) -> None:
        _check_token(config, authorization)

    def known_job(job_id: str) -> dict:
        job = store.get(job_id) if JOB_ID.match(job_id) else None
        if job is None:
            raise ApiError(404, f"no job {job_id[:40]!r}: job ids are the 32-character ids POST /v1/jobs returned")
        return job

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/health")
    def health():
        return {"status": "ok", "version": _version(), "workers": supervisor.alive(), "jobs": store.counts(),
                "auth": bool(config.tokens)}

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    def list_models():
        found = []
        for name, meta in _bundled_models().items():
            scores = meta.get("validation", {}).get("overall", {})
            found.append({"name": name, "task": meta.get("task"), "schema": meta.get("schema"),
                          "ap50": scores.get("ap50"), "description": meta.get("description", "")})
        return {"models": found, "tasks": list(TASKS)}

    @app.post("/v1/jobs", status_code=201, dependencies=[Depends(authorized)])
    def submit(files: list[UploadFile] = File(..., description="one or more images (TIFF, PNG, JPEG)"),
               task: str = Form("segment"), model: str = Form("nuclei"),
               params: str = Form("{}", description="JSON object of the task's settings, e.g. "
                                                    "{\"diameter\": 20, \"overlay\": true}")):
        if task not in TASKS:
            raise ApiError(400, f"unknown task {task!r}; this server runs: {', '.join(TASKS)}")
        if model not in _bundled_models():
            raise ApiError(404, f"unknown model {model!r}; GET /v1/models lists the ones this server has")
        try:
            raw = json.loads(params or "{}")
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")  # noqa: TRY004  (reported as a bad value)
            settings = SegmentSettings(**raw)
        except (ValueError, ValidationError) as exc:
            text = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()) \
                if isinstance(exc, ValidationError) else str(exc)
            raise ApiError(422, f"bad params ({text}); params is a JSON object of: "
                                f"{', '.join(SegmentSettings.model_fields)}") from None
        _, settings = prepare(model, settings)  # InvalidParameterError → 400 with the CLI's message
        job_id = uuid.uuid4().hex
        folder = job_folder(data_dir, job_id)
        staging = folder.with_name(job_id + ".upload")
        (staging / "in").mkdir(parents=True)
        try:
            names = _save_inputs(files, staging / "in", config)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rename(folder)
        store.create(job_id, task=task, model=model, settings=settings.model_dump(), inputs=names)
        return {"id": job_id}

    @app.get("/v1/jobs/{job_id}", dependencies=[Depends(authorized)])
    def status(job_id: str):
        return _job_view(known_job(job_id))

    @app.delete("/v1/jobs/{job_id}", dependencies=[Depends(authorized)])
    def cancel(job_id: str):
        job = known_job(job_id)
        if job["state"] in ("done", "failed"):
            raise ApiError(409, f"job {job_id} is already {job['state']}; nothing to cancel")
        store.cancel(job_id)
        return _job_view(store.get(job_id))

    @app.get("/v1/jobs/{job_id}/files/{name}", dependencies=[Depends(authorized)])
    def download(job_id: str, name: str):
        job = known_job(job_id)
        if job["state"] != "done":
            raise ApiError(409, f"job {job_id} is {job['state']}; its files are there once it is done")
        if not FILE_NAME.match(name) or name not in job["outputs"]:
            raise ApiError(404, f"job {job_id} has no file {name[:80]!r}; its files: {', '.join(job['outputs'])}")
        path = output_folder(data_dir, job) / name
        return FileResponse(path, filename=name)

    app.add_middleware(UploadLimit, limit=int(config.max_upload_mb * 1e6))
    return app


def _save_inputs(files, folder: Path, config: ServerConfig) -> list[str]:
    """Write each upload under its checked name and make sure it decodes as an image; the names."""
    from cytolens.io import IMAGE_SUFFIXES, read_image
    from cytolens.io.results import file_stem

    if not files:
        raise ApiError(422, "no files: send one or more images in the form field 'files'")
    names = []
    for upload in files:
        name = upload.filename or ""
        if not FILE_NAME.match(name) or not name.lower().endswith(IMAGE_SUFFIXES):
            raise ApiError(400, f"file name {name[:80]!r} refused: use letters, digits, '.', '_' and '-' only, "
                                f"and one of the suffixes {', '.join(IMAGE_SUFFIXES)}")
        if file_stem(Path(name)) in {file_stem(Path(n)) for n in names}:
            raise ApiError(400, f"two files share the name stem of {name!r}; their outputs would collide — "
                                "rename one")
        path = folder / name
        with path.open("wb") as out:
            shutil.copyfileobj(upload.file, out)
        try:
            image = read_image(path)
        except CytolensError as exc:
            raise ApiError(415, f"{name} is not an image cytolens can read ({exc}); send TIFF, PNG or JPEG "
                                "images") from None
        if image.size > config.max_pixels:
            raise ApiError(413, f"{name} has {image.size} values, over this server's limit of {config.max_pixels}; "
                                "use cytolens segment or cytolens.distributed for images this large")
        names.append(name)
    return names


def _version() -> str:
    from cytolens import __version__

    return __version__


def serve(config: ServerConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")
