"""End to end: ``cml-nb run``/``report`` with --compare-to in a real git repository, real kernels."""

# ruff: noqa: F811  (test parameters named like the imported `repo` fixture)

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cml_nb.cli import main
from cml_nb.errors import EXIT_REGRESSION
from tests.test_history import commit_metrics, git, repo  # noqa: F401 - the fixture, shared

NOTEBOOKS = Path(__file__).parent / "notebooks"


@pytest.fixture
def project(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """main's tip commits accuracy 0.55 and loss 0.30; the notebook logs 0.5 + lr and 1/3."""
    git(repo, "checkout", "-q", "main")
    commit_metrics(repo, {"accuracy": 0.55, "loss": 0.30, "epochs_run": 3}, "base run")
    git(repo, "checkout", "-q", "-b", "change")
    shutil.copy(NOTEBOOKS / "emits_metrics.ipynb", repo / "train.ipynb")
    git(repo, "add", "train.ipynb")
    git(repo, "commit", "-q", "-m", "new notebook")
    monkeypatch.chdir(repo)
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN", "REPO_TOKEN", "CI_JOB_TOKEN",
                 "GITHUB_BASE_REF", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return repo


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", "train.ipynb", "-o", "out/train.ipynb", *args])
    return result.exit_code, result.output


def test_run_reports_deltas_and_the_gate_passes(project: Path) -> None:
    code, output = _run("-p", "lr", "0.1", "--compare-to", "main", "--goal", "loss=min",
                        "--fail-on-regression", "accuracy:0.01")  # fmt: skip
    assert code == 0, output
    assert "base: metrics.json at main" in output and "✅ accuracy < base - 0.01: passed" in output
    report = json.loads((project / "out" / "report" / "report.json").read_text())
    assert report["baseline"]["verdicts"] == {
        "accuracy": "better",
        "loss": "worse",
        "epochs_run": "same",
    }
    markdown = (project / "out" / "report" / "report.md").read_text()
    assert "| accuracy | 0.6 | 0.55 | +0.05 (+9.1%) 🟢 |" in markdown
    assert "| loss | 0.333333 | 0.3 | +0.03333 (+11.1%) 🔴 |" in markdown
    assert "Base: metrics.json at main" in markdown


def test_run_gate_fails_with_exit_6_after_writing_the_report(project: Path) -> None:
    code, output = _run(
        "-p", "lr", "0.0", "--compare-to", "main", "--fail-if", "accuracy < base - 0.01"
    )
    assert code == EXIT_REGRESSION, output
    assert "regression gate failed: accuracy < base - 0.01 (accuracy 0.5, base 0.55)" in output
    markdown = (project / "out" / "report" / "report.md").read_text()
    assert "🔴" in markdown and "failed" in markdown  # the reason is in the report too
    # the same gate without the bundle: still exit 6
    code, _ = _run("-p", "lr", "0.0", "--no-report", "--compare-to", "main",
                   "--fail-on-regression", "accuracy:0.01")  # fmt: skip
    assert code == EXIT_REGRESSION


def test_report_with_trend_and_no_base(project: Path) -> None:
    code, output = _run("--no-report")
    assert code == 0, output
    result = CliRunner().invoke(
        main, ["report", "out/train.ipynb", "-o", "bundle", "--compare-to", "no-such-branch",
               "--fail-on-regression", "accuracy:0.01", "--trend", "accuracy", "--trend-last", "4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output  # no base: the gate is skipped, nothing breaks
    markdown = (project / "bundle" / "report.md").read_text()
    assert "no base found for no-such-branch" in markdown
    assert "skipped" in markdown
    assert "Trend of accuracy" in markdown and "this run" in markdown
    report = json.loads((project / "bundle" / "report.json").read_text())
    images = [b for b in report["blocks"] if b["type"] == "image"]
    assert (
        images
        and (project / "bundle" / "assets" / images[0]["asset"]).read_bytes()[:4] == b"\x89PNG"
    )
    table = next(b for b in report["blocks"] if b["type"] == "table")
    assert [row[2] for row in table["rows"]] == ["0.85", "0.9", "0.55", "0.55", "0.6"]


def test_settings_from_pyproject_drive_the_gate(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        '[tool.cml-nb.report]\ncompare-to = "main"\ngoal = ["loss=min"]\n'
        'fail-on-regression = ["accuracy:0.1", "loss:1%"]\n'
    )
    code, output = _run("--no-report")
    assert code == 0, output
    result = CliRunner().invoke(main, ["report", "out/train.ipynb", "-o", "bundle"])
    # accuracy 0.6 vs 0.55 passes; loss 0.333 vs 0.30 (min) is worse by more than 1%
    assert result.exit_code == EXIT_REGRESSION, result.output
    assert (
        "loss > base + abs(base) * 0.01" in result.output
        and "accuracy" not in result.output.split("failed:")[1]
    )


def _plotting_notebook(path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[
        new_code_cell("lr = 0.1", metadata={"tags": ["parameters"]}),
        new_code_cell(
            "%matplotlib inline\nimport matplotlib.pyplot as plt\nimport cml_nb\n"
            "plt.plot([0, 1], [0, lr]); plt.show()\ncml_nb.log_metric('accuracy', 0.5 + lr)"
        ),
    ])  # fmt: skip
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def test_figures_of_the_base_bundle_show_side_by_side(project: Path) -> None:
    git(project, "checkout", "-q", "main")
    _plotting_notebook(project / "plot.ipynb")
    base = CliRunner().invoke(main, ["run", "plot.ipynb", "-o", "cache/base/plot.ipynb"])
    assert base.exit_code == 0, base.output
    git(project, "checkout", "-q", "change")
    result = CliRunner().invoke(main, [
        "run", "plot.ipynb", "-o", "out/plot.ipynb", "-p", "lr", "0.3",
        "--compare-to", "main", "--history", "cache",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    markdown = (project / "out" / "report" / "report.md").read_text()
    assert "| Base | This run |" in markdown
    links = re.findall(r"\]\((assets/[0-9a-f]{64}\.png)\)", markdown)
    assert len(links) == 2 and links[0] != links[1]
    base_assets = {p.name for p in (project / "cache" / "base" / "report" / "assets").iterdir()}
    assert Path(links[0]).name in base_assets  # the base's own figure, on the left
    assert all((project / "out" / "report" / link).is_file() for link in links)
