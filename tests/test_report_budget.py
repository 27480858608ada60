"""The size budget holds on any notebook, and a shortened report says what it dropped."""

from __future__ import annotations

import base64
import re

import cmarkgfm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cml_nb.report import build_report, to_markdown
from cml_nb.report.budget import FORGE_LIMITS

NOTICE = "This report was shortened to fit"

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=300
)
lines = st.lists(text, max_size=400).map("\n".join)


@st.composite
def outputs(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(["stdout", "stderr", "plain", "png", "table", "html", "error"]))
    if kind in ("stdout", "stderr"):
        return new_output("stream", name=kind, text=draw(lines) * draw(st.integers(1, 30)))
    if kind == "plain":
        return new_output("execute_result", data={"text/plain": draw(lines)}, execution_count=1)
    if kind == "png":
        data = base64.b64encode(draw(st.binary(min_size=1, max_size=64))).decode()
        return new_output("display_data", data={"image/png": data})
    if kind == "table":
        rows = draw(st.integers(0, 200))
        cells = "".join(f"<tr><th>{i}</th><td>{draw(text)[:50]}</td></tr>" for i in range(rows))
        html = f'<table class="dataframe"><thead><tr><th></th><th>v</th></tr></thead><tbody>{cells}</tbody></table>'
        return new_output("execute_result", data={"text/html": html}, execution_count=1)
    if kind == "html":
        return new_output("display_data", data={"text/html": f"<p>{draw(text)}</p>" * 50})
    return new_output("error", ename="E", evalue=draw(text), traceback=draw(lines).split("\n"))


@st.composite
def notebooks(draw: st.DrawFn) -> dict:
    cells = []
    for _ in range(draw(st.integers(0, 25))):
        if draw(st.booleans()):
            cells.append(new_markdown_cell(draw(text)))
        else:
            outs = draw(st.lists(outputs(), max_size=4))
            cells.append(new_code_cell(draw(lines), outputs=outs, execution_count=1))
    return new_notebook(cells=cells)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
    ],
)
@given(nb=notebooks(), max_chars=st.integers(500, 70_000), show_code=st.booleans())
def test_markdown_never_exceeds_the_budget(nb: dict, max_chars: int, show_code: bool) -> None:
    report = build_report([nb], show_code=show_code)
    full = to_markdown(report, max_chars=None)
    fitted = to_markdown(report, max_chars=max_chars)
    assert len(fitted) <= max_chars
    if len(full) <= max_chars:
        assert fitted == full
    else:
        assert NOTICE in fitted or len(fitted) < len(full)
    cmarkgfm.github_flavored_markdown_to_html(fitted)  # still Markdown the engine accepts


def _big_notebook() -> dict:
    log = "\n".join(f"step {i}: loss {1 / (i + 1):.6f}" for i in range(20_000))
    return new_notebook(
        cells=[
            new_markdown_cell("# Training"),
            new_code_cell("train()", outputs=[new_output("stream", name="stdout", text=log)]),
            new_code_cell("x = 1\n" * 50, outputs=[]),
            new_markdown_cell("## Results\nThe end."),
        ],
        metadata={"papermill": {"parameters": {"lr": 0.1}}},
    )


def test_truncation_keeps_head_tail_and_says_so() -> None:
    report = build_report([_big_notebook()], show_code=True)
    fitted = to_markdown(report, max_chars=FORGE_LIMITS["github"])
    assert len(fitted) <= FORGE_LIMITS["github"]
    assert NOTICE in fitted and "truncated 1 long outputs" in fitted
    assert "step 0: loss" in fitted and "step 19999: loss" in fitted  # head and tail kept
    assert "lines truncated" in fitted
    assert "x = 1" in fitted  # truncation was enough: the code stays
    assert "The end." in fitted and "| lr | 0.1 |" in fitted


def test_code_goes_before_the_body_is_cut() -> None:
    nb = new_notebook(cells=[new_code_cell(f"# {i}\n" + "y = 2\n" * 20) for i in range(300)])
    fitted = to_markdown(build_report([nb], show_code=True), max_chars=5_000)
    assert len(fitted) <= 5_000
    assert re.search(r"removed the code of \d+ cells", fitted)


def test_code_is_dropped_largest_first_and_only_as_needed() -> None:
    cells = [new_code_cell("big = [\n" + "    1,\n" * 3_000 + "]")]
    cells += [new_code_cell(f"small_{i} = {i}") for i in range(5)]
    cells.append(new_markdown_cell("The end."))
    fitted = to_markdown(build_report([new_notebook(cells=cells)], show_code=True), max_chars=6_000)
    assert len(fitted) <= 6_000
    assert "removed the code of 1 cells" in fitted
    assert all(f"small_{i} = {i}" in fitted for i in range(5))
    assert "big = [" not in fitted and "The end." in fitted


def test_repeated_outputs_go_before_any_cell() -> None:
    same = "UserWarning: the same long warning, printed by every epoch\n" * 15
    cells = []
    for i in range(60):
        cells.append(new_markdown_cell(f"Epoch {i} notes."))
        cells.append(
            new_code_cell("train()", outputs=[new_output("stream", name="stdout", text=same)])
        )
    fitted = to_markdown(build_report([new_notebook(cells=cells)]), max_chars=8_000)
    assert len(fitted) <= 8_000
    assert "repeated outputs" in fitted
    assert all(f"Epoch {i} notes." in fitted for i in range(60))
    assert fitted.count("printed by every epoch") >= 15  # the first (and the last) kept


def test_the_middle_goes_the_start_and_the_end_stay() -> None:
    cells = [new_markdown_cell(f"Paragraph {i}: " + "words " * 100) for i in range(100)]
    fitted = to_markdown(build_report([new_notebook(cells=cells)]), max_chars=10_000)
    assert len(fitted) <= 10_000
    assert "Paragraph 0:" in fitted and "Paragraph 99:" in fitted  # the results are at the end
    assert "Paragraph 50:" not in fitted
    gap = re.search(r"✂️ (\d+) blocks of cells (\d+)–(\d+) left out here", fitted)
    assert gap and int(gap.group(2)) > 1 and int(gap.group(3)) < 100
    assert "from the middle" in fitted and "report.html" in fitted


def test_the_failing_cell_and_the_metrics_are_kept() -> None:
    cells = [new_markdown_cell(f"Paragraph {i}: " + "words " * 100) for i in range(100)]
    error = new_output("error", ename="ValueError", evalue="bad batch", traceback=["Traceback"])
    cells.insert(50, new_code_cell("step()", outputs=[error], execution_count=1))
    nb = new_notebook(cells=cells, metadata={"papermill": {"exception": True}})
    report = build_report([nb])
    report.metrics = {"accuracy": 0.5}
    fitted = to_markdown(report, max_chars=10_000)
    assert len(fitted) <= 10_000
    assert "| accuracy | 0.5 |" in fitted
    assert fitted.count("ValueError: bad batch") == 2  # the summary on top and the cell itself
    assert "Paragraph 49:" not in fitted and "Paragraph 99:" in fitted


def test_the_notice_links_the_hosted_full_report() -> None:
    cells = [new_markdown_cell(f"Paragraph {i}: " + "words " * 100) for i in range(100)]
    report = build_report([new_notebook(cells=cells)])
    url = "https://ci.example.org/runs/7/report.html"
    fitted = to_markdown(report, max_chars=10_000, full_report_url=url)
    assert f"The full report: {url}" in fitted and len(fitted) <= 10_000
    report.extra["full_report_url"] = url  # as a publisher that hosts it would set it
    assert f"The full report: {url}" in to_markdown(report, max_chars=10_000)


def test_gitlab_budget_keeps_what_github_would_cut() -> None:
    report = build_report([_big_notebook()])
    assert NOTICE in to_markdown(report, max_chars=FORGE_LIMITS["github"])
    assert NOTICE not in to_markdown(report, max_chars=FORGE_LIMITS["gitlab"])


def test_a_header_bigger_than_the_budget_is_cut_too() -> None:
    report = build_report([new_notebook(cells=[new_markdown_cell("body")])])
    report.metrics = {f"metric_{i}": i / 7 for i in range(5_000)}
    fitted = to_markdown(report, max_chars=1_000)
    assert len(fitted) <= 1_000 and NOTICE in fitted and "| metric_0 |" in fitted


def test_many_small_blocks_are_cut_quickly() -> None:
    import time

    # Plain dicts: nbformat's constructors validate each cell and would dominate the time.
    cells = [
        {"cell_type": "code", "metadata": {}, "source": "p", "execution_count": 1,
         "outputs": [{"output_type": "stream", "name": "stdout", "text": f"line {i}\n"}]}
        for i in range(20_000)
    ]  # fmt: skip
    report = build_report([{"cells": cells, "metadata": {}, "nbformat": 4}])
    start = time.perf_counter()
    fitted = to_markdown(report, max_chars=FORGE_LIMITS["github"])
    assert time.perf_counter() - start < 5
    assert len(fitted) <= FORGE_LIMITS["github"] and "line 0\n" in fitted
