"""The peer speed benchmark end to end on a tiny image, with cytolens only (the peers' venvs are not built here)."""

from __future__ import annotations

import json


def test_peers_speed_times_cytolens_and_says_which_peers_it_skipped(tmp_path, benchmark_script):
    peers_speed = benchmark_script("peers_speed")
    peers_speed.main(["--tools", "cytolens", "stardist", "--sizes", "128", "--repeats", "1",
                      "--stardist-model", str(tmp_path / "no-such-model"), "--results", str(tmp_path)])
    report = json.loads((tmp_path / "peers_speed.json").read_text())
    rows = report["results"]["128"]
    # StarDist is skipped: there is no trained model at that path
    assert set(rows) == {model + kind for model in ("nuclei", "nuclei_fast")
                         for kind in ("", " (bfloat16)", " network only", ", diameter estimated")}
    assert rows["nuclei, diameter estimated"]["network_kmacs_per_pixel"] == rows["nuclei"]["network_kmacs_per_pixel"]
    assert all(row["speed_vs_stardist"] is None for row in rows.values())  # StarDist did not run
    assert rows["nuclei"]["relative_to_reference"] == 1.0
    assert 100 < rows["nuclei"]["network_kmacs_per_pixel"] < 400  # 184 k: base width 32, depth 4
    assert rows["nuclei_fast"]["network_kmacs_per_pixel"] < 100  # a quarter of that: base width 16
    for name, row in rows.items():
        assert row["seconds"] > 0
        if name.endswith("network only"):  # the network part alone gives no labels to score
            assert row["ap50"] is None
        else:
            assert 0.5 <= row["ap50"] <= 1.0  # the few synthetic nuclei are found
    page = (tmp_path / "peers_speed.md").read_text()
    assert "| 128² | nuclei_fast |" in page and "Not run: stardist (no trained model" in page
    assert "cytolens" in report["versions"] and "--tool cytolens" in (tmp_path / "peers_speed.log").read_text()
