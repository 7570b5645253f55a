"""cytolens.metrics must stay free of torch (metrics run where no deep-learning stack is installed)."""

from __future__ import annotations

import ast
from pathlib import Path

import cytolens.metrics

METRICS_DIR = Path(cytolens.metrics.__file__).parent


def test_metrics_modules_do_not_import_torch():
    for path in sorted(METRICS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] != "torch", f"{path.name} imports {name}"
                assert not name.startswith("cytolens.") or name.startswith(("cytolens.metrics", "cytolens.errors",
                                                                             "cytolens.io")), \
                    f"{path.name} imports {name}; metrics may only use cytolens.errors and cytolens.io"
