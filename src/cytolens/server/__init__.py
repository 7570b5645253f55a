"""``cytolens serve``: an HTTP API, a web page and a job store for a whole lab.

* :mod:`cytolens.server.store` — jobs and their state in SQLite under the data folder.
* :mod:`cytolens.server.worker` — worker processes that run queued jobs through the same
  :func:`cytolens.segment_files.segment_file` as ``cytolens segment`` (same files, byte for byte).
* :mod:`cytolens.server.app` — the FastAPI app (``create_app``) and :func:`serve` (uvicorn), which
  starts the workers, restarts a worker that dies and retries its job (bounded), and resumes the
  jobs left queued or running when the server stopped.

FastAPI and uvicorn are an optional extra: ``pip install 'cytolens[serve]'``.
"""
