"""The "Changes" section of --compare-to REF, in real git repositories, as GitHub renders it."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from nbformat import v4

from cml_nb.cli import main
from cml_nb.errors import ConfigError
from cml_nb.report.diff import read_at_ref
from cml_nb.report.html import markdown_to_html


def _png(colour: tuple[int, int, int]) -> str:
    """A real 4x4 PNG of one colour, base64 as notebooks store it."""
    import struct
    import zlib

    raw = b"".join(b"\x00" + bytes(colour) * 4 for _ in range(4))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def _commit(repo: Path, nb: nbformat.NotebookNode, message: str) -> None:
    nbformat.write(nb, repo / "train.ipynb")
    _git(repo, "add", "train.ipynb")
    _git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "config", "user.email", "t@example.com")
    _git(tmp_path, "config", "user.name", "t")
    return tmp_path


def _image_output(colour: tuple[int, int, int]) -> nbformat.NotebookNode:
    return v4.new_output("display_data", data={"image/png": _png(colour), "text/plain": "<Figure>"})


def _base() -> nbformat.NotebookNode:
    return v4.new_notebook(
        cells=[
            v4.new_markdown_cell("# Training\nWe fit a model."),
            v4.new_code_cell(
                "lr = 0.1\nprint(lr)", outputs=[v4.new_output("stream", text="0.1\n")]
            ),
            v4.new_code_cell("old_helper()"),
            v4.new_code_cell("plot()", outputs=[_image_output((255, 0, 0))]),
        ]
    )


def _head() -> nbformat.NotebookNode:
    return v4.new_notebook(
        cells=[
            v4.new_markdown_cell("# Training\nWe fit a better model."),
            v4.new_code_cell(
                "lr = 0.01\nprint(lr)", outputs=[v4.new_output("stream", text="0.01\n")]
            ),
            v4.new_code_cell("plot()", outputs=[_image_output((0, 0, 255))]),
            v4.new_code_cell("evaluate(model)"),
        ]
    )


def _report(repo: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main,
        ["report", str(repo / "train.ipynb"), "-o", str(repo / "bundle"), *args],
        catch_exceptions=False,
    )
    markdown = (repo / "bundle" / "report.md").read_text() if result.exit_code == 0 else ""
    return result.exit_code, result.output, markdown


def _changes_html(markdown: str) -> str:
    """The Changes section as GitHub renders it: its <details> element, nested ones included."""
    html = markdown_to_html(markdown)
    start = html.find("<details><summary>Changes against ")
    assert start >= 0, html
    depth, position = 0, start
    for tag in re.finditer(r"<(/?)details\b", html[start:]):
        depth += -1 if tag.group(1) else 1
        if depth == 0:
            position = start + tag.end()
            break
    return html[start:position]


def test_modified_added_removed_cells_and_a_changed_image(repo: Path) -> None:
    _commit(repo, _base(), "base")
    _commit(repo, _head(), "head")
    code, output, markdown = _report(repo, "--compare-to", "HEAD~1")
    assert code == 0, output
    html = _changes_html(markdown)
    summary = re.search(r"<summary>(.*?)</summary>", html)
    assert summary and summary.group(1) == (
        "Changes against HEAD~1: 3 cells changed, 1 added, 1 removed"
    )
    diffs = [
        d.replace("&lt;", "<").replace("&gt;", ">").rstrip("\n")
        for d in re.findall(r'<pre lang="diff"><code>(.*?)</code></pre>', html, re.S)
    ]
    # The Markdown cell's source, the code cell's source and its printed output.
    assert any("-We fit a model.\n+We fit a better model." in d for d in diffs), diffs
    assert any("-lr = 0.1\n+lr = 0.01\n print(lr)" in d for d in diffs), diffs
    assert any("-0.1\n+0.01" in d for d in diffs), diffs
    assert "+evaluate(model)" in diffs and "-old_helper()" in diffs
    assert "<strong>Cell 4</strong> (code) added" in html
    assert "<strong>Cell 3 of the base</strong> (code) removed" in html
    # The changed image: base | head, two different content-addressed assets, both written.
    table = re.search(r"<table>.*?</table>", html, re.S)
    assert table and "<th>Base</th>" in table.group(0) and "<th>This run</th>" in table.group(0)
    images = re.findall(r'<img src="(assets/[0-9a-f]{64}\.png)"', table.group(0))
    assert len(images) == 2 and images[0] != images[1]
    assert all((repo / "bundle" / link).is_file() for link in images)


def test_only_sources_when_the_base_has_no_outputs(repo: Path) -> None:
    base = _base()
    for cell in base.cells:
        cell.pop("outputs", None) if cell.cell_type == "markdown" else cell.update(outputs=[])
    _commit(repo, base, "base without outputs")
    _commit(repo, _head(), "head")
    code, output, markdown = _report(repo, "--compare-to", "main~1")
    assert code == 0, output
    html = _changes_html(markdown)
    assert "3 cells changed" not in html and "2 cells changed, 1 added, 1 removed" in html
    assert "has no outputs: only sources compared" in html
    assert "<table>" not in html


def test_the_section_is_folded_and_counts_against_the_budget(repo: Path) -> None:
    base = _base()
    base.cells[1].source = "\n".join(f"x{i} = {i}" for i in range(3000))
    _commit(repo, base, "base")
    head = _head()
    head.cells[1].source = "\n".join(f"x{i} = {i + (i >= 1000)}" for i in range(3000))
    _commit(repo, head, "head")
    code, output, markdown = _report(repo, "--compare-to", "HEAD~1", "--max-chars", "20000")
    assert code == 0, output
    assert len(markdown) <= 20000 and "shortened to fit 20,000 characters" in markdown
    assert "<details><summary>Changes against HEAD~1" in markdown
    page = (repo / "bundle" / "report.html").read_text()
    assert "+x2999 = 3000" in page  # report.html keeps the whole diff


def test_notebook_new_at_head_and_unknown_ref(repo: Path) -> None:
    (repo / "README").write_text("x")
    _git(repo, "add", "README")
    _git(repo, "commit", "-q", "-m", "first")
    _commit(repo, _head(), "add the notebook")
    code, output, markdown = _report(repo, "--compare-to", "HEAD~1")
    assert code == 0, output
    assert "Changes against HEAD~1: new notebook" in markdown
    code, output, markdown = _report(repo, "--compare-to", "no-such-branch")
    assert code == 0, output  # as for the metrics, a missing base is said, not fatal
    assert "Changes against no-such-branch: base not found" in markdown
    assert "no such commit in the repository" in markdown and "fetch-depth: 0" in markdown


def test_a_ref_that_looks_like_an_option_is_a_ref(repo: Path) -> None:
    _commit(repo, _base(), "base")
    # --end-of-options: git reads "--output=x" as a ref (none such), not as an option.
    with pytest.raises(ConfigError, match="--compare-to --output=x: no such commit"):
        read_at_ref("--output=x", repo / "train.ipynb")
    assert not (repo / "x").exists()
    assert read_at_ref("HEAD", repo / "train.ipynb") is not None
    assert read_at_ref("HEAD", repo / "other.ipynb") is None
    outside = repo.parent / f"{repo.name}-elsewhere"
    outside.mkdir()
    with pytest.raises(ConfigError, match="is not in a git repository"):
        read_at_ref("HEAD", outside / "train.ipynb")


def test_report_json_round_trips_the_diff_blocks(repo: Path) -> None:
    _commit(repo, _base(), "base")
    _commit(repo, _head(), "head")
    code, output, _ = _report(repo, "--compare-to", "HEAD~1")
    assert code == 0, output
    data = json.loads((repo / "bundle" / "report.json").read_text())
    section = data["blocks"][0]
    assert section["type"] == "details"
    kinds = {b["type"] for b in section["blocks"]}
    assert {"diff", "image", "markdown"} <= kinds
    from cml_nb.report import load_bundle
    from cml_nb.report.markdown import to_markdown

    again = to_markdown(load_bundle(repo / "bundle"), max_chars=None)
    assert again.count("```diff") == io.StringIO(
        (repo / "bundle" / "report.md").read_text()
    ).read().count("```diff")


def test_run_compare_to_adds_the_changes_of_the_executed_notebook(repo: Path) -> None:
    base = v4.new_notebook(cells=[v4.new_code_cell("x = 1"), v4.new_code_cell("print(x * 2)")])
    base.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    _commit(repo, base, "base")
    head = v4.new_notebook(
        cells=[
            v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
            v4.new_code_cell("print(x * 3)"),
        ]
    )
    head.metadata = base.metadata
    _commit(repo, head, "head")
    out = repo / "runs" / "train.ipynb"
    result = CliRunner().invoke(
        main,
        ["run", str(repo / "train.ipynb"), "-o", str(out), "-p", "x", "5", "--compare-to",
         "HEAD~1", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    markdown = (out.parent / "report" / "report.md").read_text()
    html = _changes_html(markdown)
    # Papermill's injected-parameters cell is not a change; the edited cell is cell 2.
    assert "Changes against HEAD~1: 1 cell changed" in html
    assert "<strong>Cell 2</strong> (code) changed" in html
    assert "-print(x * 2)\n+print(x * 3)" in html
