"""Units of the report's renderers that the fidelity suite reaches only through a kernel.

The terminal model's cursor codes one by one, ``data:`` images linked at hosted URLs,
tables that are not DataFrames, and report.html's time on thousands of images.
"""

from __future__ import annotations

import base64
import random
import struct
import time
import zlib
from pathlib import Path

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options
from nbformat.v4 import new_code_cell, new_notebook, new_output

from cml_nb.report import build_report, to_html, to_markdown
from cml_nb.terminal import render_terminal


def gfm(markdown: str) -> str:
    return cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)


def png(seed: int, side: int = 40) -> bytes:
    """A valid PNG of noise (so every image is distinct and incompressible)."""
    pixels = random.Random(seed).randbytes(side * side * 3)
    raw = b"".join(b"\x00" + pixels[r * side * 3 : (r + 1) * side * 3] for r in range(side))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    head = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("50%\r100%\n", "100%\n"),  # a bar redrawn in place
        ("abc\b\bX\n", "aXc\n"),  # backspace moves the cursor back
        ("one\ntwo\x1b[A\rONE\n", "ONE\ntwo\n"),  # cursor up, then overwrite
        ("keep this\x1b[4D\x1b[Kgone\n", "keep gone\n"),  # back 4, erase to end of line
        ("a\nb\nc\x1b[2J\x1b[Hz", "z"),  # clear screen, cursor home
        ("\x1b[31mred\x1b[0m \x1b]0;title\x07ok", "red ok"),  # colours and OSC dropped
        ("plain text\n", "plain text\n"),
    ],
)
def test_terminal_model_applies_cursor_codes(written: str, shown: str) -> None:
    assert render_terminal(written) == shown


def test_hostile_cursor_moves_stay_bounded() -> None:
    assert render_terminal("\x1b[999999999B" + "x").count("\n") <= 100_000
    assert render_terminal("\x1b[999999999A\x1b[999999999Dx") == "x"


def _html_output(html: str) -> dict:
    return new_output("display_data", data={"text/html": html, "text/plain": "<HTML>"})


def test_data_images_in_html_follow_the_hosted_url() -> None:
    uri = "data:image/png;base64," + base64.b64encode(png(1)).decode()
    nb = new_notebook(
        cells=[new_code_cell("x", outputs=[_html_output(f'<p>cm</p><img src="{uri}">')])]
    )
    report = build_report([nb])
    [name] = report.assets
    markdown = to_markdown(report, asset_url=lambda a: f"https://cdn.example.org/{a.name}")
    assert f'<img src="https://cdn.example.org/{name}"' in gfm(markdown)
    assert "data:" not in markdown


def test_tables_that_are_not_dataframes_stay_html() -> None:
    html = "<table><tr><th>k</th></tr><tr><td>v</td></tr></table>"
    nb = new_notebook(cells=[new_code_cell("x", outputs=[_html_output(html)])])
    rendered = gfm(to_markdown(build_report([nb])))
    assert "<th>k</th>" in rendered and "<td>v</td>" in rendered


def test_report_html_is_linear_in_the_number_of_images() -> None:
    images = [base64.b64encode(png(i)).decode() for i in range(2_000)]
    outputs = [new_output("display_data", data={"image/png": d}) for d in images]
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": "", "execution_count": 1,
                     "outputs": outputs}], "metadata": {}, "nbformat": 4}  # fmt: skip
    report = build_report([nb])
    assert len(report.assets) == 2_000
    start = time.perf_counter()
    page = to_html(report)
    elapsed = time.perf_counter() - start
    assert page.count('src="data:image/png;base64,') == 2_000
    # One str.replace per image over a page that grows to ~30 MB took minutes; one pass
    # takes well under a second on a laptop (the bound leaves room for a loaded CI box).
    assert elapsed < 10, elapsed


def test_plotly_figure_is_drawn_once_per_figure() -> None:
    from cml_nb.report.plotly_image import plotly_png

    figure = {"data": [{"type": "bar", "x": ["a"], "y": [4]}], "layout": {"width": 200}}
    first = plotly_png(figure)
    assert first[0] is not None and first[0].startswith(b"\x89PNG"), first[1]
    start = time.perf_counter()
    again = plotly_png(json_copy(figure))  # an equal figure from another output
    assert again[0] is first[0]  # the cached rendering: kaleido did not start again
    assert time.perf_counter() - start < 0.5


def json_copy(value: dict) -> dict:
    import json

    return json.loads(json.dumps(value))


def test_markdown_cells_with_empty_attachments_and_data_images(tmp_path: Path) -> None:
    from nbformat.v4 import new_markdown_cell

    from cml_nb.report import write_bundle

    uri = "data:image/png;base64," + base64.b64encode(png(2)).decode()
    cell = new_markdown_cell(f'![empty](attachment:e.png) and <img src="{uri}" alt="inline">')
    cell["attachments"] = {"e.png": {"image/png": ""}}  # as an interrupted paste saves it
    report = build_report([new_notebook(cells=[cell])])
    bundle = write_bundle(report, tmp_path / "bundle")  # used to fail: "asset ... has no data"
    [name] = report.assets
    assert (bundle / "assets" / name).read_bytes() == png(2)
    html = gfm((bundle / "report.md").read_text())
    assert f'<img src="assets/{name}" alt="inline">' in html


def test_html_that_sanitizes_to_nothing_falls_back_to_the_next_mime_type() -> None:
    empty_html = "<style>.x{}</style><script>draw()</script>"
    with_latex = new_output(
        "display_data",
        data={"text/html": empty_html, "text/latex": "$x^2$", "text/plain": "<Eq object>"},
    )
    repr_only = new_output(
        "display_data",
        data={"text/html": empty_html, "text/plain": "<IPython.core.display.HTML object>"},
    )
    nb = new_notebook(cells=[new_code_cell("x", outputs=[with_latex, repr_only])])
    html = gfm(to_markdown(build_report([nb])))
    assert '<pre lang="math"><code>x^2' in html
    assert "IPython.core.display.HTML object" not in html and "draw()" not in html


def _chrome_children() -> list[int]:
    """Chrome processes descended from this one (kaleido's), read from /proc."""
    import os

    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                names[int(entry)] = cmd.read().decode(errors="replace")
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return [p for p, name in names.items() if "chrom" in name.lower() and ours(p)]


def test_figures_of_one_report_share_one_kaleido_server_that_stops() -> None:
    figures = [
        new_output(
            "display_data",
            data={"application/vnd.plotly.v1+json": {"data": [{"type": "bar", "y": [i, 7]}]}},
        )
        for i in range(3)
    ]
    nb = new_notebook(cells=[new_code_cell("x", outputs=figures)])
    report = build_report([nb])
    assert len(report.assets) == 3
    assert all(a.data.startswith(b"\x89PNG") for a in report.assets.values())
    assert _chrome_children() == []  # the server and its Chrome are gone with the build


def test_a_repr_quoted_in_a_note_is_inert() -> None:
    widget = new_output(
        "display_data",
        data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "gone"},
            "text/plain": "<!-- <img src=x onerror=alert(1)>",
        },
    )
    after = new_output("stream", name="stdout", text="after the widget\n")
    nb = new_notebook(
        cells=[new_code_cell("w", outputs=[widget]), new_code_cell("p", outputs=[after])]
    )
    html = gfm(to_markdown(build_report([nb])))
    assert "<code>&lt;!-- &lt;img src=x onerror=alert(1)&gt;</code>" in html
    assert "<!--" not in html and "after the widget" in html


def test_a_colab_notebook_without_execution_counts_is_not_unknown() -> None:
    out = new_output("stream", name="stdout", text="trained\n")
    cell = new_code_cell("fit()", outputs=[out])
    cell["execution_count"] = None  # Colab and Kaggle save notebooks like this
    nb = new_notebook(cells=[cell], metadata={"colab": {"provenance": []}})
    header = gfm(to_markdown(build_report([nb]))).split("<hr />")[0]
    assert "no error outputs" in header and "unknown" not in header
