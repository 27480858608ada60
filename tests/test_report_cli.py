"""`cml-nb report` end to end, the self-contained HTML page, and the light import path."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cml_nb import execute
from cml_nb.cli import main

NOTEBOOKS = Path(__file__).parent / "notebooks"


def cml_nb(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "gallery.ipynb"
    assert execute.run(NOTEBOOKS / "report_outputs.ipynb", out).succeeded
    return out


def test_report_writes_the_bundle(executed: Path, tmp_path: Path) -> None:
    code, output = cml_nb("report", str(executed), "-o", str(tmp_path / "b"), "--show-code")
    assert code == 0, output
    bundle = tmp_path / "b"
    assert sorted(p.name for p in bundle.iterdir()) == [
        "assets", "report.html", "report.json", "report.md",
    ]  # fmt: skip
    markdown = (bundle / "report.md").read_text()
    assert markdown.startswith("## Report: report_outputs.ipynb")
    assert "```python" in markdown
    links = set(re.findall(r"\]\((assets/[0-9a-f]{64}\.\w+)\)", markdown))
    assert len(links) == 4 and all((bundle / link).is_file() for link in links)
    assert {f"assets/{p.name}" for p in (bundle / "assets").iterdir()} == links
    data = json.loads((bundle / "report.json").read_text())
    assert data["status"] == "succeeded" and data["metrics"] == {"accuracy": 0.93, "loss": 0.12}


def test_default_bundle_is_beside_the_notebook_and_max_chars_applies(executed: Path) -> None:
    code, output = cml_nb("report", str(executed), "--max-chars", "2000")
    assert code == 0, output
    markdown = (executed.parent / "report" / "report.md").read_text()
    assert len(markdown) <= 2000 and "shortened to fit 2,000 characters" in markdown
    assert len((executed.parent / "report" / "report.html").read_text()) > 20_000  # complete


def test_rerun_keeps_asset_names_and_drops_stale_ones(executed: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert cml_nb("report", str(executed), "-o", str(out))[0] == 0
    first = sorted(p.name for p in (out / "assets").iterdir())
    stale = out / "assets" / ("0" * 64 + ".png")
    stale.write_bytes(b"old")
    assert cml_nb("report", str(executed), "-o", str(out))[0] == 0
    assert sorted(p.name for p in (out / "assets").iterdir()) == first


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.ipynb", "notebook not found"),
        ("not_a_notebook.ipynb", "is not a Jupyter notebook"),
        ("malformed.ipynb", "is not valid JSON"),
    ],
)
def test_unreadable_notebooks_exit_3_with_one_line(name: str, message: str, tmp_path: Path) -> None:
    code, output = cml_nb("report", str(NOTEBOOKS / name), "-o", str(tmp_path))
    assert code == 3
    assert message in output and len(output.strip().splitlines()) == 1


def test_help_describes_the_bundle() -> None:
    code, output = cml_nb("report", "--help")
    assert code == 0 and "report.md" in output and "--max-chars" in output


def test_html_is_self_contained_and_sanitized(executed: Path, tmp_path: Path) -> None:
    assert cml_nb("report", str(executed), "-o", str(tmp_path))[0] == 0
    page = (tmp_path / "report.html").read_text()
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/") for s in sources)
    assert (
        "<script" not in page and "onclick" not in page and "http://" not in page.split("<main>")[1]
    )
    assert "<table>" in page and "Training loss" not in page  # text inside the PNG, not HTML


def test_report_path_imports_no_heavy_module(executed: Path, tmp_path: Path) -> None:
    probe = (
        "import sys\nfrom cml_nb.cli import main\n"
        f"sys.argv = ['cml-nb', 'report', {str(executed)!r}, '-o', {str(tmp_path)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = {'nbformat', 'nbconvert', 'jinja2', 'matplotlib', 'jsonschema', 'papermill',"
        " 'pandas', 'numpy', 'github', 'gitlab', 'boto3'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr
    assert (tmp_path / "report.md").is_file()


@pytest.mark.browser
@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="chromium is not installed",
)
def test_html_renders_in_headless_chromium(executed: Path, tmp_path: Path) -> None:
    assert cml_nb("report", str(executed), "-o", str(tmp_path))[0] == 0
    done = subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
            (tmp_path / "report.html").as_uri(),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    dom = done.stdout
    assert "<table>" in dom and "hello from stdout" in dom
    assert dom.count("data:image/") == 4


def test_run_writes_the_bundle_by_default_even_when_a_cell_fails(tmp_path: Path) -> None:
    out = tmp_path / "failed" / "nb.ipynb"
    code, output = cml_nb("run", str(NOTEBOOKS / "raises_in_cell_2.ipynb"), "-o", str(out))
    assert code == 1, output
    markdown = (out.parent / "report" / "report.md").read_text()
    assert "❌ failed" in markdown and "ValueError: bad value 1" in markdown.split("---")[0]
    assert json.loads((out.parent / "report" / "report.json").read_text())["status"] == "failed"
    quiet = tmp_path / "quiet" / "nb.ipynb"
    code, output = cml_nb("run", str(NOTEBOOKS / "trivial.ipynb"), "-o", str(quiet), "--no-report")
    assert code == 0, output
    assert not (quiet.parent / "report").exists()


def test_settings_come_from_pyproject_then_environment(
    executed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.cml-nb.report]\nshow-code = true\nmax-chars = 3000\n"
    )
    monkeypatch.chdir(tmp_path)
    assert cml_nb("report", str(executed), "-o", "a")[0] == 0
    markdown = (tmp_path / "a" / "report.md").read_text()
    assert len(markdown) <= 3000 and "shortened to fit 3,000 characters" in markdown
    monkeypatch.setenv("CML_NB_REPORT_MAX_CHARS", "1000000")
    assert cml_nb("report", str(executed), "-o", "b")[0] == 0
    second = (tmp_path / "b" / "report.md").read_text()
    assert "```python" in second and "shortened" not in second
