"""Every output type renders right: checked through GitHub's own Markdown engine (cmark-gfm).

The gallery notebook runs once in a real kernel (matplotlib, pandas, tqdm, warnings,
IPython display types, ipywidgets); the rarer cases (plotly, JavaScript-only HTML,
attachments, tracebacks with colour codes) are notebooks built in memory.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import cmarkgfm
import nbformat
import pytest
from cmarkgfm.cmark import Options
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cml_nb import execute
from cml_nb.report import Report, build_report, to_markdown, write_bundle
from cml_nb.report.markdown import metrics_table

NOTEBOOKS = Path(__file__).parent / "notebooks"
ASSET = re.compile(r'<img src="(assets/[0-9a-f]{64}\.(png|jpg|gif|svg))"')
PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def gfm(markdown: str) -> str:
    """What GitHub shows (before its own sanitizing, which only removes more)."""
    return cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The gallery notebook executed in a real kernel, its bundle, Markdown and HTML."""
    folder = tmp_path_factory.mktemp("gallery")
    record = execute.run(NOTEBOOKS / "report_outputs.ipynb", folder / "gallery.ipynb")
    assert record.succeeded, record.message
    bundle = write_bundle(build_report([folder / "gallery.ipynb"]), folder / "report")
    markdown = (bundle / "report.md").read_text()
    return bundle, markdown, gfm(markdown)


def body(html: str) -> str:
    return html.split("<hr />", 1)[1]


def test_images_of_every_format_are_assets_linked_relatively(
    gallery: tuple[Path, str, str],
) -> None:
    bundle, _, html = gallery
    found = {ext: link for link, ext in ASSET.findall(html)}
    assert set(found) == {"png", "jpg", "gif", "svg"}
    magic = {"png": b"\x89PNG", "jpg": b"\xff\xd8", "gif": b"GIF8", "svg": b"<svg"}
    for ext, link in found.items():
        data = (bundle / link).read_bytes()
        assert data.startswith(magic[ext]), ext
    # Named by content: the file name is the SHA-256 of the bytes.
    import hashlib

    for link in found.values():
        path = bundle / link
        assert path.stem == hashlib.sha256(path.read_bytes()).hexdigest()


def test_dataframes_are_pipe_tables_not_raw_html(gallery: tuple[Path, str, str]) -> None:
    _, markdown, html = gallery
    assert "<style" not in markdown and "dataframe" not in markdown
    assert "<th>model</th>" in html and "<th>accuracy</th>" in html
    assert "<td>b|c</td>" in html  # a pipe inside a cell does not split it
    assert "<td>*bold?*</td>" in html  # cell text is literal, not emphasis
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td>" in html  # nor HTML
    assert "Showing 10 of 100 rows." in html


def test_streams_stdout_stderr_and_warnings_are_distinct(gallery: tuple[Path, str, str]) -> None:
    _, markdown, html = gallery
    assert re.search(r'<pre lang="text"><code>hello from stdout\nred text and plain\n', html)
    assert "\x1b" not in markdown and "[31m" not in markdown
    quotes = re.findall(r"<blockquote>(.*?)</blockquote>", html, re.DOTALL)
    stderr = [q for q in quotes if "this went to stderr" in q]
    assert stderr and "<strong>stderr</strong>" in stderr[0]
    warning = [q for q in quotes if "UserWarning: learning rate is high" in q]
    assert warning and "Warning</strong>" in warning[0]
    assert not any("hello from stdout" in q for q in quotes)


def test_progress_bars_keep_only_their_final_frame(gallery: tuple[Path, str, str]) -> None:
    _, markdown, _ = gallery
    assert "\r" not in markdown
    assert markdown.count("50/50") == 1
    assert not re.search(r"\b[0-4]?\d/50\b", markdown)


def test_long_output_folds_into_details(gallery: tuple[Path, str, str]) -> None:
    _, _, html = gallery
    match = re.search(
        r"<details><summary>Output \(120 lines\)</summary>(.*?)</details>", html, re.S
    )
    assert match and "epoch 119: loss=0.0083" in match.group(1)


def test_markdown_html_latex_and_widgets(gallery: tuple[Path, str, str]) -> None:
    _, markdown, html = gallery
    assert "<strong>bold</strong> from <code>display(Markdown)</code>" in html
    assert "<p>safe <b>html</b></p>" in html
    assert "onclick" not in markdown and "alert(" not in markdown and "<script" not in markdown
    assert '<pre lang="math"><code>\\frac{a}{b} = c^2' in html
    assert "Interactive output omitted: a widget (<code>IntSlider(value=3)</code>)" in html


def test_metrics_are_in_the_header_table_only(gallery: tuple[Path, str, str]) -> None:
    _, markdown, html = gallery
    header = html.split("<hr />", 1)[0]
    assert "<td>accuracy</td>\n<td>0.93</td>" in header
    assert "accuracy = 0.93" not in markdown


def test_code_hidden_by_default_and_tags_honoured(gallery: tuple[Path, str, str]) -> None:
    _, markdown, html = gallery
    assert "print(" not in markdown and "```python" not in markdown
    assert "removed cell" not in markdown and "remove-output: must not appear" not in markdown
    assert "remove-input: output stays" in markdown
    assert re.search(
        r"<details><summary>Output of cell \d+</summary>\n<pre[^>]*><code>hide-output", html
    )


def test_show_code_folds_hide_input_and_source_hidden(tmp_path: Path) -> None:
    nb = new_notebook(
        cells=[
            new_code_cell("a = 1", metadata={"tags": ["hide-input"]}),
            new_code_cell("b = 2", metadata={"jupyter": {"source_hidden": True}}),
            new_code_cell("c = 3", metadata={"tags": ["remove-input"]}),
            new_code_cell("d = 4"),
        ]
    )
    html = body(gfm(to_markdown(build_report([nb], show_code=True))))
    folded = re.findall(r"<details><summary>Code</summary>\n<pre lang=\"python\"><code>(.)", html)
    assert folded == ["a", "b"]
    assert "c = 3" not in html
    assert '<pre lang="python"><code>d = 4' in html


def _nb_with(*outputs: dict, **meta: object) -> nbformat.NotebookNode:
    cell = new_code_cell("x", outputs=list(outputs), execution_count=1)
    return new_notebook(cells=[cell], metadata=meta)


def test_plotly_without_kaleido_shows_a_note_or_its_static_image() -> None:
    fig = {"data": [{"type": "scatter", "x": [1], "y": [2]}], "layout": {}}
    bare = new_output(
        "display_data", data={"application/vnd.plotly.v1+json": fig, "text/plain": "Figure"}
    )
    html = gfm(to_markdown(build_report([_nb_with(bare)])))
    assert "Interactive output omitted: a plotly figure" in html or ASSET.search(html)
    png = base64.b64encode(PNG_1PX).decode()
    with_png = new_output(
        "display_data", data={"application/vnd.plotly.v1+json": fig, "image/png": png}
    )
    report = build_report([_nb_with(with_png)])
    assert ASSET.search(gfm(to_markdown(report)))
    assert list(report.assets.values())[0].data == PNG_1PX


def test_javascript_only_html_is_noted_never_silently_dropped() -> None:
    bokeh = new_output(
        "display_data",
        data={
            "text/html": '<div id="p1"></div><script>Bokeh.embed("p1")</script>',
            "text/plain": "Fig",
        },
    )
    vendor = new_output("display_data", data={"application/vnd.vegalite.v5+json": {"mark": "bar"}})
    html = gfm(to_markdown(build_report([_nb_with(bokeh, vendor)])))
    assert "Interactive output omitted: HTML that needs JavaScript" in html
    assert "Interactive output omitted: application/vnd.vegalite.v5+json" in html
    assert "Bokeh.embed" not in html


def test_html_styles_and_event_handlers_are_stripped() -> None:
    out = new_output(
        "display_data",
        data={
            "text/html": '<style>p{color:red}</style><p style="x" onmouseover="evil()">'
            '<a href="javascript:evil()">link</a> <img src="x.png" onerror="evil()">text</p>'
        },
    )
    markdown = to_markdown(build_report([_nb_with(out)]))
    assert "color:red" not in markdown and "evil" not in markdown and "style=" not in markdown
    assert "text</p>" in gfm(markdown)


def test_tracebacks_are_readable_without_ansi_codes() -> None:
    error = new_output(
        "error",
        ename="ValueError",
        evalue="bad value 1",
        traceback=[
            "\x1b[0;31m------------------\x1b[0m",
            "\x1b[0;31mValueError\x1b[0m Traceback (most recent call last)",
            "Cell \x1b[0;32mIn[1], line 1\x1b[0m\n----> 1 raise ValueError('bad value 1')",
            "\x1b[0;31mValueError\x1b[0m: bad value 1",
        ],
    )
    markdown = to_markdown(build_report([_nb_with(error)]))
    html = gfm(markdown)
    assert "\x1b" not in markdown
    assert '<pre lang="pytb"><code>' in html and "----&gt; 1 raise ValueError" in html
    assert "<code>ValueError: bad value 1</code>" in html


def test_markdown_attachments_become_assets() -> None:
    png = base64.b64encode(PNG_1PX).decode()
    cell = new_markdown_cell(
        "See ![plot](attachment:plot.png)", attachments={"plot.png": {"image/png": png}}
    )
    report = build_report([new_notebook(cells=[cell])])
    (asset,) = report.assets.values()
    assert f'<img src="assets/{asset.name}" alt="plot"' in gfm(to_markdown(report))
    hosted = to_markdown(report, asset_url=lambda a: f"https://cdn.example/{a.name}")
    assert f"(https://cdn.example/{asset.name})" in hosted


def test_failed_run_puts_the_error_summary_first(tmp_path: Path) -> None:
    record = execute.run(
        NOTEBOOKS / "raises_in_cell_2.ipynb", tmp_path / "failed.ipynb", raise_on_failure=False
    )
    report = build_report([tmp_path / "failed.ipynb"])
    assert report.status == "failed"
    html = gfm(to_markdown(report))
    header = html.split("<hr />", 1)[0]
    # Numbered as in the author's notebook: papermill's banner cells are not counted.
    assert re.search(r"Cell 3 \(In \[\d+\]\) raised <code>ValueError: bad value 1</code>", header)
    assert report.error is not None and report.error.cell_index == record.error.cell_index
    assert '<pre lang="pytb">' in header and "\x1b" not in header
    assert "failed" in header and record.environment["python"] in header
    assert "before" in body(html) and "never" not in body(html)


def test_header_shows_parameters_duration_commit_and_baseline(tmp_path: Path) -> None:
    execute.run(NOTEBOOKS / "emits_metrics.ipynb", tmp_path / "m.ipynb", {"lr": 0.2})
    report = build_report([tmp_path / "m.ipynb"])
    html = gfm(to_markdown(report)).split("<hr />", 1)[0]
    assert "<td>lr</td>\n<td>0.2</td>" in html and "<td>accuracy</td>" in html
    assert re.search(r"\d+\.\d s", html)
    report.baseline = {"metrics": {"accuracy": 0.5, "old": 1}, "source": "main@abc1234"}
    columns, rows = metrics_table(report)
    assert columns == ["Metric", "Value", "Base", "Δ"]
    assert ["accuracy", "0.7", "0.5", "+0.2 (+40.0%)"] in rows
    assert ["old", "—", "1", ""] in rows
    assert "<th>Δ</th>" in gfm(to_markdown(report)) and "main@abc1234" in to_markdown(report)


def test_inserting_a_cell_renames_no_image() -> None:
    png = base64.b64encode(PNG_1PX).decode()
    image = new_output("display_data", data={"image/png": png})
    before = build_report([new_notebook(cells=[new_code_cell("p", outputs=[image])])])
    other = new_output(
        "display_data", data={"image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg'/>"}
    )
    after = build_report(
        [
            new_notebook(
                cells=[new_code_cell("q", outputs=[other]), new_code_cell("p", outputs=[image])]
            )
        ]
    )
    assert set(before.assets) < set(after.assets)


def test_several_notebooks_make_one_report(tmp_path: Path) -> None:
    execute.run(NOTEBOOKS / "emits_metrics.ipynb", tmp_path / "a" / "a.ipynb")
    execute.run(
        NOTEBOOKS / "raises_in_cell_2.ipynb", tmp_path / "b" / "b.ipynb", raise_on_failure=False
    )
    report = build_report([tmp_path / "a" / "a.ipynb", tmp_path / "b" / "b.ipynb"])
    assert report.status == "failed"
    assert "emits_metrics/accuracy" in report.metrics
    html = gfm(to_markdown(report))
    assert (
        "<h2>tests/notebooks/emits_metrics.ipynb</h2>" in html or "emits_metrics.ipynb</h2>" in html
    )
    assert "This notebook's run failed." in html


def test_report_round_trips_through_report_json(gallery: tuple[Path, str, str]) -> None:
    from cml_nb.report import load_bundle

    bundle, markdown, _ = gallery
    loaded = load_bundle(bundle)
    assert isinstance(loaded, Report)
    assert to_markdown(loaded) == markdown
    assert all(asset.data for asset in loaded.assets.values())


def test_styled_dataframes_become_tables_too() -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("jinja2")
    styled = pd.DataFrame({"a": [1, 2], "b": [0.5, 0.25]}).style.highlight_max()._repr_html_()
    out = new_output("execute_result", data={"text/html": styled}, execution_count=1)
    html = gfm(to_markdown(build_report([_nb_with(out)])))
    assert "<th>a</th>" in html and "<td>0.250000</td>" in html
    assert "background-color" not in html


def test_markdown_images_beside_the_notebook_are_copied_into_assets(tmp_path: Path) -> None:
    (tmp_path / "fig").mkdir()
    (tmp_path / "fig" / "arch.png").write_bytes(PNG_1PX)
    (tmp_path / "secret.txt").write_text("not an image")
    cell = new_markdown_cell(
        '![architecture](fig/arch.png "the model") ![web](https://example.org/x.png) '
        "![missing](fig/none.png) ![outside](../../etc/x.png) [text](secret.txt)"
        ' <img src="fig/arch.png" alt="tag"> <img src="../outside.png" alt="up">'
    )
    (tmp_path.parent / "outside.png").write_bytes(PNG_1PX[:-1] + b"\x00")  # exists, outside
    nbformat.write(new_notebook(cells=[cell]), tmp_path / "nb.ipynb")
    report = build_report([tmp_path / "nb.ipynb"])
    (asset,) = report.assets.values()
    assert asset.data == PNG_1PX
    html = gfm(to_markdown(report))
    assert f'<img src="assets/{asset.name}" alt="architecture" title="the model"' in html
    assert 'src="https://example.org/x.png"' in html and 'src="fig/none.png"' in html
    assert f'<img src="assets/{asset.name}" alt="tag">' in html  # <img src> copied too
    assert '<img src="../outside.png" alt="up">' in html  # outside the folder: left as is


def test_runner_names_the_gpu_from_the_run_record() -> None:
    from cml_nb.records import RunRecord

    record = RunRecord(
        notebook="train.ipynb",
        output="runs/train/train.ipynb",
        status="succeeded",
        duration=12.5,
        environment={
            "platform": "Linux-6.5.0-x86_64-with-glibc2.36", "machine": "x86_64",
            "python": "3.11.7", "ci": "github",
            "gpus": [{"name": "NVIDIA H100 80GB HBM3"}, {"name": "NVIDIA H100 80GB HBM3"}],
            "git": {"commit": "0123456789abcdef0123456789abcdef01234567"},
        },
    )  # fmt: skip
    report = build_report([new_notebook(cells=[])], records=[record])
    header = gfm(to_markdown(report)).split("<hr />", 1)[0]
    assert "runner: 2 × NVIDIA H100 80GB HBM3 · Linux x86_64 · Python 3.11.7 · CI: github" in header
    assert "commit <code>0123456789ab</code>" in header and "12.5 s" in header
    assert "<code>train.ipynb</code>" in header
