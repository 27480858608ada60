"""A sweep's comparison report publishes unchanged through ``cml-nb publish`` (forge emulator)."""

from __future__ import annotations

from pathlib import Path

import pytest
from forge_emulator import scenarios
from test_sweep import lines, write_notebook

from cml_nb.publish import publish
from cml_nb.report.bundle import load_bundle
from cml_nb.report.model import ImageBlock
from cml_nb.sweep.runner import run_sweep
from cml_nb.sweep.space import SweepSpace

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(autouse=True)
def _fast_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    # PyGithub waits 1 s between writes by default (GitHub's advice); not needed on 127.0.0.1.
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")


def test_the_comparison_report_publishes_as_a_pr_comment_with_its_plots(
    forge_emulator: object, tmp_path: Path
) -> None:
    notebook = write_notebook(tmp_path / "toy.ipynb")
    counter = tmp_path / "counter.txt"
    result = run_sweep(
        notebook,
        SweepSpace(grid={"a": [1, 2], "b": ["x", "y"]}, fixed={"counter": str(counter)}),
        tmp_path / "sweep",
        jobs=2,
        cache_dir=tmp_path / "cache",
        metric="score",
    )
    assert len(lines(counter)) == 4
    bundle = Path(result.folder) / "report"
    images = [b for b in load_bundle(bundle).blocks if isinstance(b, ImageBlock)]

    s = scenarios.github(forge_emulator, tmp_path)  # type: ignore[arg-type]
    published = publish(bundle, env=s.env, cwd=tmp_path)
    assert published.action == "created" and published.target.number == s.pull.number  # type: ignore[union-attr]
    assert len(published.uploaded) == len(images) == 1  # one metric: one figure
    body = s.pull.comments[0].body  # type: ignore[union-attr]
    assert "| ★ best | a=2,b=y |" in body
    assert "![score by parameter](http" in body and "](assets/" not in body  # hosted links
