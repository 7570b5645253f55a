"""``cytolens serve``: the HTTP API and web page (:mod:`cytolens.server`)."""

from __future__ import annotations

from pathlib import Path

import typer

from cytolens.cli._common import user_errors


@user_errors
def serve_command(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface; then set "
                                               "--token)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    data_dir: Path = typer.Option(Path("cytolens-server"), "--data-dir", help="Folder for the job database, "
                                                                              "uploads and results."),
    token: list[str] | None = typer.Option(None, "--token", help="Accept requests bearing this token "
                                                                 "(repeatable); none: no authentication.",
                                           envvar="CYTOLENS_TOKEN"),
    workers: int = typer.Option(1, help="Worker processes running jobs side by side."),
    max_upload_mb: float = typer.Option(100.0, "--max-upload-mb", help="Largest request body accepted (MB)."),
    dask: str | None = typer.Option(None, "--dask", metavar="ADDRESS",
                                    help="Run each job's images on this Dask scheduler (or `local`)."),
) -> None:
    """Serve cytolens over HTTP: a web page at /, the API under /v1, its documentation at /docs."""
    try:
        from cytolens.server.app import ServerConfig, serve
    except ImportError as exc:
        raise typer.BadParameter(f"the server needs FastAPI and uvicorn ({exc}); pip install 'cytolens[serve]'")
    from cytolens.errors import InvalidParameterError

    if workers < 1 or max_upload_mb <= 0:
        raise InvalidParameterError("need --workers >= 1 and --max-upload-mb > 0")
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        typer.echo("warning: serving beyond this machine without --token: anyone who can reach it can use it",
                   err=True)
    typer.echo(f"cytolens serving on http://{host}:{port}/ (data in {data_dir})", err=True)
    serve(ServerConfig(data_dir=data_dir, tokens=tuple(token or ()), workers=workers, max_upload_mb=max_upload_mb,
                       dask=dask), host=host, port=port)


def register(app: typer.Typer) -> None:
    """Add serve to ``app``."""
    app.command("serve")(serve_command)
