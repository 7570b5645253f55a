"""cytolens.distributed on a real Dask LocalCluster: many files, and one image block by block."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from cytolens.data.synthetic import synthetic_nuclei
from cytolens.io import write_image

MODEL = "nuclei_fast"


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    from cytolens.distributed import local_cluster

    with local_cluster(2) as cluster, Client(cluster) as dask_client:
        yield dask_client


def test_files_on_dask_match_the_cli(tmp_path, client):
    from typer.testing import CliRunner

    from cytolens.cli import app
    from cytolens.distributed import segment_files_on_dask
    from cytolens.segment_files import SegmentSettings

    inputs = tmp_path / "in"
    inputs.mkdir()
    for seed in range(3):
        write_image(inputs / f"img{seed}.tif", synthetic_nuclei(shape=(128, 128), n_nuclei=8, seed=seed)[0])
    (inputs / "broken.tif").write_bytes(b"not a TIFF")
    files = sorted(inputs.glob("img*.tif")) + [inputs / "broken.tif"]
    result = CliRunner().invoke(app, ["segment", *map(str, files), "-o", str(tmp_path / "cli"), "-m", MODEL,
                                      "--overlay", "-q"])
    settings = SegmentSettings(overlay=True)
    out = tmp_path / "dask"
    out.mkdir()
    outcomes = list(segment_files_on_dask(files, out, MODEL, settings, address=client))
    assert [p.name for p, _, _ in outcomes] == [f.name for f in files]
    assert outcomes[-1][1] is None and outcomes[-1][2] is not None  # an unreadable file fails alone
    for path, info, error in outcomes[:-1]:
        assert error is None and info.n_objects > 0
        for suffix in ("_labels.tif", "_cells.csv", "_overlay.png"):
            name = path.stem + suffix
            assert (out / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert result.exit_code in (0, 1)


def test_cli_dask_option(tmp_path, client):
    from typer.testing import CliRunner

    from cytolens.cli import app

    image = tmp_path / "a.tif"
    write_image(image, synthetic_nuclei(shape=(128, 128), n_nuclei=8, seed=4)[0])
    result = CliRunner().invoke(app, ["segment", str(image), "-o", str(tmp_path / "out"), "-m", MODEL, "-q",
                                      "--dask", client.scheduler.address])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a_labels.tif").exists() and (tmp_path / "out" / "segment_summary.csv").exists()
    big = tmp_path / "big.tif"
    write_image(big, synthetic_nuclei(shape=(200, 200), n_nuclei=20, seed=5)[0])
    large = CliRunner().invoke(app, ["segment-large", str(big), "-o", str(tmp_path / "big.ome.zarr"), "-m", MODEL,
                                     "--diameter", "17", "--block-size", "128", "--overlap", "48", "--dask",
                                     client.scheduler.address])
    assert large.exit_code == 0, large.output
    assert "4 blocks" in large.output and (tmp_path / "big_cells.csv").exists()
    again = CliRunner().invoke(app, ["segment-large", str(big), "-o", str(tmp_path / "big.ome.zarr"), "-m", MODEL])
    assert again.exit_code == 1 and "--overwrite" in again.output
    bad = CliRunner().invoke(app, ["segment", str(image), "-o", str(tmp_path / "o2"), "-m", MODEL, "--dask",
                                   "local:x"])
    assert bad.exit_code == 1 and "local:N" in bad.output


def test_blockwise_equals_untiled(tmp_path, client):
    """Blocks much smaller than the image, cells across every border: the stitched labels match untiled."""
    from cytolens.api import segment
    from cytolens.distributed import segment_large_image
    from cytolens.io import read_image
    from cytolens.metrics.segmentation import match
    from cytolens.segment_files import SegmentSettings

    image, _ = synthetic_nuclei(shape=(448, 448), n_nuclei=160, diameter_range=(12, 22), seed=3)
    source = tmp_path / "big.tif"
    write_image(source, image, compression=None)
    settings = SegmentSettings(diameter=17)
    result = segment_large_image(source, tmp_path / "big_labels.ome.zarr", MODEL, settings, block_size=160,
                                 overlap=112, address=client)  # the overlap covers the network's context
    assert len(result.blocks) == 9
    stitched = np.asarray(zarr.open_group(str(result.labels), mode="r")["0"][...])
    untiled = segment(read_image(source), MODEL, diameter=17)
    matching = match(untiled, stitched, threshold=0.5)
    ap = matching.tp / (matching.tp + matching.fp + matching.fn)
    assert ap >= 0.99, (matching.tp, matching.fp, matching.fn)
    assert len(np.unique(stitched)) - 1 == result.n_objects == stitched.max()  # numbered 1..N, none lost
    import pandas as pd

    table = pd.read_csv(result.table)
    assert sorted(table["label"]) == list(range(1, result.n_objects + 1))
    row = table.iloc[len(table) // 2]
    assert stitched[round(row["centroid_y"]), round(row["centroid_x"])] in (row["label"], 0)


def test_blockwise_with_one_intensity_range_equals_segment(tmp_path, client):
    """Uneven illumination (a 4x ramp): the blocks, normalized once with the whole image's percentiles, give the
    objects ``segment`` gives the whole image with the same range; that range is the one ``segment`` takes.

    The diameter is the model's own (20 px: no resizing) and block windows start on multiples of 16 (the
    network's pooling grid), so each block's network sees what the whole image's does around its objects."""
    from cytolens.api import segment
    from cytolens.distributed import segment_large_image
    from cytolens.metrics.segmentation import match
    from cytolens.models import load
    from cytolens.preprocess import PercentileNormalizer
    from cytolens.segment_files import SegmentSettings

    image, _ = synthetic_nuclei(shape=(320, 320), n_nuclei=90, diameter_range=(12, 22), seed=5)
    image = (image.astype(np.float32) * np.linspace(0.25, 1.0, 320, dtype=np.float32)[None, :]).astype(np.uint16)
    source = tmp_path / "ramp.tif"
    write_image(source, image, compression=None)
    progress = []
    result = segment_large_image(source, tmp_path / "ramp_labels.ome.zarr", MODEL, SegmentSettings(diameter=20),
                                 block_size=128, overlap=96, address=client,
                                 progress=lambda done, total: progress.append((done, total)))
    assert len(result.blocks) == 9 and progress == [(done, 9) for done in range(1, 10)]
    whole = PercentileNormalizer.from_meta(load(MODEL).meta.get("normalization")).statistics(image[..., None])
    assert result.intensity_range == pytest.approx(whole)
    stitched = np.asarray(zarr.open_group(str(result.labels), mode="r")["0"][...])
    untiled = segment(image, MODEL, diameter=20, intensity_range=result.intensity_range)
    matching = match(untiled, stitched, threshold=0.5)
    assert matching.n_true > 50
    assert matching.tp == matching.n_true == matching.n_pred, (matching.tp, matching.fp, matching.fn)


def test_bad_intensity_range_is_a_one_line_error(tmp_path):
    from cytolens.api import segment
    from cytolens.distributed import segment_large_image
    from cytolens.errors import CytolensError

    image, _ = synthetic_nuclei(shape=(64, 64), n_nuclei=3, seed=1)
    for bad in [(5, 5), (10, 2), (0, float("nan")), (0,), "0,1", (True, 2)]:
        with pytest.raises(CytolensError, match="intensity_range must be") as error:
            segment(image, MODEL, diameter=17, intensity_range=bad)
        assert "\n" not in str(error.value)
    with pytest.raises(CytolensError, match="intensity_range must be"):  # before any cluster starts
        segment_large_image(tmp_path / "missing.tif", tmp_path / "out.ome.zarr", MODEL, intensity_range=(1, 0))
    with pytest.raises(CytolensError, match="for 2D images"):
        segment(np.stack([image] * 3), MODEL, axes="ZYX", intensity_range=(0, 1))


def test_server_runs_jobs_on_the_dask_cluster(tmp_path, client):
    """`cytolens serve --dask ADDRESS`: a job's files come from the cluster and equal the CLI's."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from server_helpers import Server, submit, wait_for, write_images
    from typer.testing import CliRunner

    from cytolens.cli import app

    def compute_seconds_of_segment_tasks(dask_scheduler) -> float:
        prefix = dask_scheduler.task_prefixes.get("cytolens-segment")  # the key name segment_files_on_dask gives
        return 0.0 if prefix is None else float(prefix.all_durations.get("compute", 0.0))

    before = client.run_on_scheduler(compute_seconds_of_segment_tasks)
    paths = write_images(tmp_path / "in", 2)
    server = Server(tmp_path / "server", "--dask", client.scheduler.address)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            response = submit(http, paths, {"diameter": None})
            assert response.status_code == 201, response.text
            job = wait_for(http, response.json()["id"], timeout=120)
            assert job["state"] == "done" and job["error"] is None, job
            cli = CliRunner().invoke(app, ["segment", *map(str, paths), "-o", str(tmp_path / "cli"), "-m",
                                           "nuclei_fast", "-q"])
            assert cli.exit_code == 0, cli.output
            expected = sorted(p.name for p in (tmp_path / "cli").iterdir() if p.name != "segment_summary.csv")
            assert job["files"] == expected
            for name in expected:
                assert http.get(f"/v1/jobs/{job['id']}/files/{name}").content == (tmp_path / "cli" / name).read_bytes()
    finally:
        server.stop()
    assert client.run_on_scheduler(compute_seconds_of_segment_tasks) > before  # the cluster did the work
