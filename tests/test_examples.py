"""Every example notebook runs through `cml-nb run` (nbval runs them too: see pyproject)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cml_nb.cli import main

EXAMPLES = sorted((Path(__file__).parent.parent / "example_notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(notebook: Path, tmp_path: Path) -> None:
    out = tmp_path / notebook.name
    result = CliRunner().invoke(main, ["run", str(notebook), "-o", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics, "example notebooks log metrics"
    if notebook.stem == "train":
        assert 0.9 < metrics["accuracy"] <= 1.0
