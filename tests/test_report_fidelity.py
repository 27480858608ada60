"""Reports of real notebooks: what a reader of the comment sees, for each class of issue 13.

One notebook per session is generated with nbformat and executed for real (nbclient, a
real ipykernel) with the real libraries: nested and notebook tqdm, ipywidgets, plotly,
bokeh, pandas and its Styler, matplotlib, sympy, IPython's JSON/GeoJSON/HTML display
types, empty and corrupt images. It runs with ``allow_errors`` as Jupyter would (a cell
with a deliberate error does not stop it), so it is also a notebook cml-nb did not run.
``cml-nb report`` then makes the bundle, and every assertion reads the cmark-gfm
rendering of report.md (GitHub's own Markdown engine) or report.html.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cmarkgfm
import nbformat
import pytest
from click.testing import CliRunner
from cmarkgfm.cmark import Options
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cml_nb.cli import main
from cml_nb.forge.comments import is_report, parse_metrics

ASSET = re.compile(r'<img src="assets/([0-9a-f]{64})\.(png|jpg|gif|svg)"')
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def gfm(markdown: str) -> str:
    """What GitHub shows (before its own sanitizing, which only removes more)."""
    return cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)


def text_of(html: str) -> str:
    """The rendered page as a reader reads it: comments (closed or not) and tags gone."""
    import html as html_lib

    html = re.sub(r"<!--.*?(?:-->|$)", "", html, flags=re.S)  # a browser hides them
    return html_lib.unescape(re.sub(r"<[^>]+>", "", html))


# Each cell is tagged with the class of issue 13 it reproduces, so failures read clearly.
CELLS: list[tuple[str, str]] = [
    (
        "setup",
        "import base64, io, json, sys\nfrom IPython.display import display, HTML, JSON, "
        "Markdown\nimport matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt",
    ),
    (
        "2-nested-tqdm",
        "from tqdm import tqdm, trange\n"
        "for epoch in trange(3, desc='epochs', mininterval=0):\n"
        "    for step in trange(40, desc='batches', leave=False, mininterval=0):\n"
        "        pass\n"
        "print('RESULT accuracy=0.93')",
    ),
    (
        "2-stdout-cursor",
        "for i in range(30):\n"
        "    sys.stdout.write(f'\\rloading {i + 1}/30')\n"
        "sys.stdout.write('\\n')\n"
        "print('line A\\nline B\\x1b[A\\x1b[2K\\rline A replaced')",
    ),
    (
        "5-tqdm-notebook",
        "from tqdm.notebook import tqdm as ntqdm\n"
        "for _ in ntqdm(range(3), desc='folds'):\n    pass",
    ),
    (
        "5-ipywidgets",
        "import ipywidgets as w\n"
        "bar = w.IntProgress(value=7, max=10, description='Loading')\n"
        "box = w.HBox([w.Label('stage 2 of 3'), w.FloatProgress(value=1.0, max=1.0), "
        "w.HTML('<b>done</b>')])\n"
        "display(bar, box)\n"
        "display(w.IntSlider(value=3), w.Dropdown(options=['a', 'b']))",
    ),
    (
        "3-dataframes",
        "import pandas as pd\n"
        "train = pd.DataFrame({'model': ['lr', 'rf'], 'f1': [0.81, 0.88]})\n"
        "test = pd.DataFrame({'model': ['lr', 'rf'], 'f1': [0.79, 0.86]})\n"
        "display(HTML('<h4>Scores</h4>' + train.style.set_caption('Train split')"
        ".to_html() + test.to_html()))",
    ),
    ("3-two-displays", "display(train)\ndisplay(test.style.set_caption('Test split'))"),
    (
        "4-data-image",
        "fig, ax = plt.subplots(figsize=(2, 2))\nax.plot([1, 3, 2])\n"
        "buf = io.BytesIO()\nfig.savefig(buf, format='png')\nplt.close(fig)\n"
        "b64 = base64.b64encode(buf.getvalue()).decode()\n"
        "display(HTML(f'<p>Confusion matrix</p><img src=\"data:image/png;base64,"
        '{b64}" alt="cm">\'))',
    ),
    (
        "6-plotly",
        "import plotly.graph_objects as go, plotly.io as pio\n"
        "pio.renderers.default = 'plotly_mimetype'\n"
        "go.Figure(go.Bar(x=['a', 'b'], y=[3, 1]))",
    ),
    (
        "6-plotly-old",
        # A figure as plotly 4 saved it: 'titlefont' is no longer a valid property.
        "display({'application/vnd.plotly.v1+json': {'data': [{'type': 'scatter', "
        "'y': [1, 3, 2]}], 'layout': {'title': 'old', 'titlefont': {'size': 18}}}, "
        "'text/plain': 'Figure'}, raw=True)",
    ),
    (
        "7-plotly-loader",
        "from plotly.offline import init_notebook_mode\ninit_notebook_mode(connected=False)",
    ),
    (
        "7-bokeh",
        "from bokeh.io import output_notebook, show\nfrom bokeh.plotting import figure\n"
        "output_notebook(hide_banner=True)\np = figure(width=200, height=200)\n"
        "p.line([1, 2, 3], [3, 1, 2])\nshow(p)",
    ),
    ("7-video", "from IPython.display import Video\nVideo('https://example.org/clip.mp4')"),
    (
        "sympy",
        "import sympy\nx = sympy.symbols('x')\nsympy.init_printing()\n"
        "sympy.Integral(sympy.sqrt(x), x)",
    ),
    (
        "11-json",
        "display(JSON({'epochs': 3, 'best': {'f1': 0.88}}))\n"
        "display({'application/geo+json': {'type': 'Point', 'coordinates': [2.35, 48.85]},"
        " 'text/plain': '<GeoJSON>'}, raw=True)",
    ),
    (
        "1-empty-image",
        "display({'image/png': '', 'text/plain': '<Figure with 0 Axes>'}, raw=True)\n"
        "display({'image/svg+xml': ''}, raw=True)",
    ),
    (
        "13-corrupt-image",
        "display({'image/png': base64.b64encode(b'GIF89a not a png').decode()},"
        " raw=True)\n"
        "display({'image/jpeg': 'not base64 at all!!'}, raw=True)",
    ),
    (
        "14-markers",
        "print('<!-- cml-nb:report evil -->')\n"
        "display(Markdown('<!-- cml-nb:metrics {\"accuracy\": 1.0} -->'))",
    ),
    ("12-deliberate-error", "raise ValueError('shown on purpose')"),
    ("after-error", "print('still running after the error')"),
]
MARKDOWN_CELLS = {
    "9-local-img": 'A figure from disk: <img src="figs/local.png" alt="local figure" width="80">',
    "14-unclosed": "Notes for later\n\n<!-- TODO: finish this section",
    "final": "## Final words\n\nThe end of the notebook is visible.",
}
WIDGET_STATE_SAVER = (
    "import json, ipywidgets\n"
    "# What a front end saves as metadata.widgets: the manager's state, in the format of\n"
    "# https://ipywidgets.readthedocs.io/en/8.1.5/embedding.html (version_major 2).\n"
    "json.dump(ipywidgets.Widget.get_manager_state(drop_defaults=False), open('state.json', 'w'))"
)


def _build(folder: Path) -> Path:
    cells = [new_markdown_cell("# Fidelity notebook")]
    for tag, source in CELLS:
        cells.append(new_code_cell(source, metadata={"tags": [tag]}))
        if tag == "sympy":
            cells.append(new_markdown_cell(MARKDOWN_CELLS["9-local-img"]))
    cells.append(new_markdown_cell(MARKDOWN_CELLS["14-unclosed"]))
    cells.append(new_code_cell(WIDGET_STATE_SAVER, metadata={"tags": ["remove-cell"]}))
    cells.append(new_markdown_cell(MARKDOWN_CELLS["final"]))
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNEL})
    path = folder / "fidelity.ipynb"
    nbformat.write(nb, path)
    return path


def _execute(path: Path) -> None:
    """Run it as Jupyter does (errors do not stop it), then save widget state as a front end."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, allow_errors=True, timeout=120, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()  # fmt: skip
    # nbclient stores the widget state it saw over comms (store_widget_state); a JupyterLab
    # save writes the kernel's widget manager state instead (https://ipywidgets.readthedocs.
    # io/en/8.1.5/embedding.html, "widget-state+json"), which the kernel dumped in its last
    # cell: the report is tested on what a front end saves. `cml-nb run`'s own path (nbclient
    # through papermill) is tested below.
    state = json.loads((path.parent / "state.json").read_text())
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": state}
    nbformat.write(nb, path)


@pytest.fixture(scope="session")
def fidelity(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The executed notebook, its bundle, and the rendered Markdown and HTML."""
    folder = tmp_path_factory.mktemp("fidelity")
    (folder / "figs").mkdir()
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    fig.savefig(folder / "figs" / "local.png")
    plt.close(fig)
    path = _build(folder)
    _execute(path)
    result = CliRunner().invoke(main, ["report", str(path), "-o", str(folder / "bundle")])
    assert result.exit_code == 0, result.output
    bundle = folder / "bundle"
    markdown = (bundle / "report.md").read_text()
    return {
        "folder": folder,
        "notebook": path,
        "bundle": bundle,
        "markdown": markdown,
        "html": gfm(markdown),
        "page": (bundle / "report.html").read_text(),
    }


def section(fidelity: dict[str, Any], tag: str) -> str:
    """The rendered HTML of one tagged cell's outputs: from its blocks to the next cell's."""
    nb = nbformat.read(fidelity["notebook"], as_version=4)
    number = next(i + 1 for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", []))
    report = json.loads((fidelity["bundle"] / "report.json").read_text())
    from cml_nb.report import Report, to_markdown

    full = Report.from_dict(report)
    full.blocks = [b for b in full.blocks if b.cell == number]
    from cml_nb.report.assets import read_assets

    read_assets(full.assets, fidelity["bundle"] / "assets")
    return gfm(to_markdown(full, max_chars=None)).split("<hr />", 1)[1]


# 2. Progress bars: what a terminal shows at the end, not every frame.
def test_nested_tqdm_shows_its_final_bars_only(fidelity: dict[str, Any]) -> None:
    shown = text_of(section(fidelity, "2-nested-tqdm"))
    assert re.search(r"epochs: 100%\|\S+\| 3/3", shown), shown
    assert "batches" not in shown  # leave=False: the inner bar is gone at the end
    assert shown.count("epochs") == 1
    assert "RESULT accuracy=0.93" in shown


def test_cursor_codes_are_applied_on_stdout_too(fidelity: dict[str, Any]) -> None:
    shown = text_of(section(fidelity, "2-stdout-cursor"))
    assert "loading 30/30" in shown and "loading 29/30" not in shown
    assert "line A replaced" in shown and "line B" in shown
    assert "\x1b" not in fidelity["markdown"] and "[2K" not in shown


# 5. Widgets: drawn from the saved widget state, one note per cell for the rest.
def test_tqdm_notebook_bar_shows_its_last_state(fidelity: dict[str, Any]) -> None:
    shown = text_of(section(fidelity, "5-tqdm-notebook"))
    assert re.search(r"folds: 100% \|█{10}\| 3/3", shown), shown
    assert "0%" not in shown.replace("100%", "")


def test_simple_widgets_are_text_and_the_rest_one_note(fidelity: dict[str, Any]) -> None:
    shown = text_of(section(fidelity, "5-ipywidgets"))
    assert "Loading |███████   |" in shown
    assert "stage 2 of 3 |██████████| done" in shown
    assert shown.count("Interactive output omitted") == 1
    assert "2 widgets" in shown


# 3. Several tables in one HTML output, captions kept; several displays each kept.
def test_every_dataframe_of_one_output_is_a_table_with_its_caption(
    fidelity: dict[str, Any],
) -> None:
    html = section(fidelity, "3-dataframes")
    assert html.count("<table>") == 2
    assert "Scores" in html and "Train split" in html
    assert "<td>0.88" in html and "<td>0.86" in html  # train's rf, test's rf


def test_two_displays_of_dataframes_are_two_tables(fidelity: dict[str, Any]) -> None:
    html = section(fidelity, "3-two-displays")
    assert html.count("<table>") == 2 and "Test split" in html


# 4. data: images inside HTML become assets.
def test_data_uri_images_in_html_become_assets(fidelity: dict[str, Any]) -> None:
    html = section(fidelity, "4-data-image")
    assert "Confusion matrix" in html
    found = ASSET.findall(html)
    assert len(found) == 1
    data = (fidelity["bundle"] / "assets" / f"{found[0][0]}.png").read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert "data:image" not in fidelity["markdown"]
    assert 'src="data:image/png;base64,' in fidelity["page"]  # report.html inlines it


# 6. plotly: a static image through kaleido (installed), without validation.
def test_plotly_figure_is_a_png(fidelity: dict[str, Any]) -> None:
    html = section(fidelity, "6-plotly")
    found = ASSET.findall(html)
    assert found, html
    data = (fidelity["bundle"] / "assets" / f"{found[0][0]}.png").read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert "kaleido" not in html


def test_plotly_figure_saved_by_older_plotly_is_a_png(fidelity: dict[str, Any]) -> None:
    html = section(fidelity, "6-plotly-old")
    found = ASSET.findall(html)
    assert found, html
    data = (fidelity["bundle"] / "assets" / f"{found[0][0]}.png").read_bytes()
    assert data.startswith(PNG_MAGIC)


# 7. What sanitizes to nothing: nothing for loaders, a note for what a reader saw.
def test_script_loaders_show_nothing(fidelity: dict[str, Any]) -> None:
    assert text_of(section(fidelity, "7-plotly-loader")).strip() == ""


def test_bokeh_plot_gets_a_note_and_its_loader_nothing(fidelity: dict[str, Any]) -> None:
    shown = text_of(section(fidelity, "7-bokeh"))
    assert shown.count("Bokeh plot") == 1, shown
    assert "BokehJS" not in shown and "Loading" not in shown


def test_video_is_named_not_its_repr(fidelity: dict[str, Any]) -> None:
    shown = text_of(section(fidelity, "7-video"))
    assert "a video" in shown
    assert "IPython.core.display" not in fidelity["markdown"]


def test_sympy_is_math(fidelity: dict[str, Any]) -> None:
    html = section(fidelity, "sympy")
    assert '<pre lang="math"><code>' in html and "\\sqrt{x}" in html


# 11. JSON as a json block, GeoJSON as a geojson block (GitHub draws it as a map).
def test_json_and_geojson_are_code_blocks(fidelity: dict[str, Any]) -> None:
    html = section(fidelity, "11-json")
    assert '<pre lang="json"><code>' in html and "&quot;best&quot;" in html
    assert '<pre lang="geojson"><code>' in html and "48.85" in html
    assert "IPython.core.display.JSON" not in html


# 1 and 13. Empty and corrupt images: a note each, never a broken file, never a crash.
def test_empty_images_are_notes(fidelity: dict[str, Any]) -> None:
    shown = text_of(section(fidelity, "1-empty-image"))
    assert "an empty PNG image (<Figure with 0 Axes>)" in shown
    assert "an empty SVG image" in shown


def test_corrupt_images_are_notes_and_no_file(fidelity: dict[str, Any]) -> None:
    shown = text_of(section(fidelity, "13-corrupt-image"))
    assert "a PNG image whose bytes are not PNG data" in shown
    assert "a JPEG image whose data is not valid base64" in shown
    magic = {"png": PNG_MAGIC, "jpg": b"\xff\xd8\xff", "gif": b"GIF8", "svg": b"<"}
    for path in (fidelity["bundle"] / "assets").iterdir():
        assert path.read_bytes().startswith(magic[path.suffix[1:]]), path.name


# 9. <img src> in a Markdown cell is copied into the bundle.
def test_relative_img_tags_in_markdown_are_copied(fidelity: dict[str, Any]) -> None:
    html = fidelity["html"]
    match = re.search(r'<img src="assets/([0-9a-f]{64})\.png" alt="local figure"', html)
    assert match, html
    copied = fidelity["bundle"] / "assets" / f"{match.group(1)}.png"
    assert copied.read_bytes() == (fidelity["folder"] / "figs" / "local.png").read_bytes()


# 12. A notebook cml-nb did not run: error outputs counted, not a "failed" run.
def test_header_counts_error_outputs_outside_cml_nb_run(fidelity: dict[str, Any]) -> None:
    header = text_of(fidelity["html"].split("<hr />", 1)[0])
    assert "1 error output" in header
    assert "failed" not in header and "unknown" not in header
    assert "still running after the error" in fidelity["html"]


# Issue 14 item 7: output cannot forge cml-nb's marker or metrics, nor hide the comment.
def test_marker_like_output_cannot_pass_for_cml_nb_comments(fidelity: dict[str, Any]) -> None:
    markdown = fidelity["markdown"]
    assert not is_report(markdown)
    assert parse_metrics(markdown) is None
    assert "evil" in text_of(section(fidelity, "14-markers"))  # still shown as printed


def test_unclosed_comment_hides_only_the_rest_of_its_cell(fidelity: dict[str, Any]) -> None:
    shown = text_of(fidelity["html"])
    assert "Notes for later" in shown and "TODO" not in shown
    assert "Final words" in shown and "The end of the notebook is visible." in shown


def test_report_html_allows_only_its_own_and_data_images(fidelity: dict[str, Any]) -> None:
    page = fidelity["page"]
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert csp, page[:500]
    policy = dict(p.strip().split(" ", 1) for p in csp.group(1).split(";") if p.strip())
    assert policy["default-src"] == "'none'"
    assert policy["img-src"] == "'self' data:"
    assert "script-src" not in policy  # falls back to default-src 'none'


# 6. "without kaleido": the same bundle built where kaleido cannot be imported.
def test_plotly_without_kaleido_says_to_install_it(fidelity: dict[str, Any]) -> None:
    out = fidelity["folder"] / "no-kaleido"
    script = (
        "import sys; sys.modules['kaleido'] = None\n"  # an environment without kaleido
        "from cml_nb.cli import main; main()"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CML_NB_")}
    proc = subprocess.run(
        [sys.executable, "-c", script, "report", str(fidelity["notebook"]), "-o", str(out)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shown = text_of(gfm((out / "report.md").read_text()))
    assert "a plotly figure (install plotly and kaleido for a static image)" in shown


# 1. `cml-nb run` of a notebook that succeeded but drew an empty image: exit 0, report written.
# 5. And its tqdm.notebook bar, from the widget state nbclient stored during the run.
def test_run_of_a_notebook_with_an_empty_image_succeeds(tmp_path: Path) -> None:
    bar = new_code_cell(
        "from tqdm.notebook import tqdm\nfor _ in tqdm(range(4), desc='folds'):\n    pass"
    )
    cell = new_code_cell(
        "from IPython.display import display\n"
        "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
        "plt.figure()\n"  # a figure with no axes: matplotlib's inline backend skips it,
        "display({'image/png': '', 'text/plain': '<Figure size 640x480 with 0 Axes>'}, raw=True)"
    )  # so the empty PNG is displayed by hand, as notebooks from older backends hold it
    nbformat.write(
        new_notebook(cells=[bar, cell], metadata={"kernelspec": KERNEL}), tmp_path / "e.ipynb"
    )
    result = CliRunner().invoke(
        main, ["run", str(tmp_path / "e.ipynb"), "-o", str(tmp_path / "out" / "e.ipynb")]
    )
    assert result.exit_code == 0, result.output
    markdown = next((tmp_path / "out").rglob("report.md")).read_text()
    shown = text_of(gfm(markdown))
    assert "Image left out: an empty PNG image (<Figure size 640x480 with 0 Axes>)" in shown
    assert re.search(r"folds: 100% \|█{10}\| 4/4", shown), shown
