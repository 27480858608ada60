"""No credential survives into report.md, report.html, report.json or the assets.

Tokens are generated at test time in each provider's format, then planted in
every place a notebook can carry text: outputs of each kind, tables, tracebacks,
SVG, Markdown cells, code, parameters and metrics.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cml_nb.metrics import METRICS_MIME
from cml_nb.report import build_report, load_bundle, to_html, to_markdown, write_bundle

ALNUM = string.ascii_letters + string.digits


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env_secret = rand(24)
    monkeypatch.setenv("MY_SERVICE_TOKEN", env_secret)
    key_body = "\n".join(rand(64, ALNUM + "+/") for _ in range(4))
    return {
        "github": "ghp_" + rand(36),
        "github_pat": "github_pat_" + rand(30),
        "gitlab": "glpat-" + rand(20),
        "aws_id": "AKIA" + rand(16, string.ascii_uppercase + string.digits),
        "aws_secret": rand(40, ALNUM + "/+"),
        "slack": "xoxb-" + rand(12, string.digits) + "-" + rand(24),
        "private_key": f"-----BEGIN RSA PRIVATE KEY-----\n{key_body}\n-----END RSA PRIVATE KEY-----",
        "env": env_secret,
    }


def planted_notebook(t: dict[str, str]) -> dict:
    every = " ".join(v for k, v in t.items() if k not in ("aws_secret", "private_key"))
    aws = f"aws_secret_access_key = {t['aws_secret']}"
    svg = f'<svg xmlns="http://www.w3.org/2000/svg"><text>{t["github"]}</text></svg>'
    table = (
        '<table class="dataframe"><thead><tr><th></th><th>key</th></tr></thead>'
        f"<tbody><tr><th>0</th><td>{t['gitlab']}</td></tr></tbody></table>"
    )
    outputs = [
        new_output("stream", name="stdout", text=f"token {every}\n{aws}\n"),
        new_output("stream", name="stderr", text=t["private_key"] + "\n"),
        new_output("execute_result", data={"text/plain": repr(t["slack"])}, execution_count=1),
        new_output("display_data", data={"text/html": f"<p>{t['github_pat']}</p>"}),
        new_output("display_data", data={"text/markdown": f"**{t['aws_id']}**"}),
        new_output("display_data", data={"text/latex": f"$${t['env']}$$"}),
        new_output("display_data", data={"image/svg+xml": svg}),
        new_output("execute_result", data={"text/html": table}, execution_count=2),
        new_output(
            "display_data",
            data={METRICS_MIME: {"metrics": {"note": t["github"]}}, "text/plain": "m"},
        ),
        new_output("error", ename="AuthError", evalue=f"bad {t['env']}", traceback=[every, aws]),
    ]
    return new_notebook(
        cells=[
            new_markdown_cell(f"Deploy with `{t['github']}`"),
            new_code_cell(f"token = '{t['gitlab']}'\nkey = '{t['env']}'", outputs=outputs),
        ],
        metadata={"papermill": {"parameters": {"api_token": t["gitlab"], "note": t["slack"]}}},
    )


def assert_clean(text: str, t: dict[str, str]) -> None:
    for name, value in t.items():
        probe = value if name != "private_key" else value.split("\n")[1]
        assert probe not in text, f"{name} leaked"


def test_no_token_survives_in_any_bundle_file(tmp_path: Path, tokens: dict[str, str]) -> None:
    report = build_report([planted_notebook(tokens)], show_code=True, title=f"x {tokens['github']}")
    bundle = write_bundle(report, tmp_path / "report")
    for path in bundle.rglob("*"):
        if path.is_file():
            assert_clean(path.read_bytes().decode("utf-8", errors="replace"), tokens)
    markdown = (bundle / "report.md").read_text()
    assert "***" in markdown and "token ***" in markdown
    assert json.loads((bundle / "report.json").read_text())["parameters"]["api_token"] == "***"
    assert_clean(to_markdown(load_bundle(bundle)), tokens)


def test_html_data_uris_hold_no_token_either(tokens: dict[str, str]) -> None:
    report = build_report([planted_notebook(tokens)])
    page = to_html(report)
    assert_clean(page, tokens)
    for chunk in page.split("data:image/svg+xml;base64,")[1:]:
        assert_clean(base64.b64decode(chunk.split('"', 1)[0]).decode(), tokens)


def test_extra_secret_values_are_masked(tokens: dict[str, str]) -> None:
    password = rand(16)
    nb = new_notebook(cells=[new_code_cell("x", outputs=[new_output("stream", text=password)])])
    assert password not in to_markdown(build_report([nb], secrets=[password]))


def test_a_token_cut_short_by_pandas_is_masked_in_every_bundle_file(tmp_path: Path) -> None:
    # pandas (display.max_colwidth) cuts a long cell to its first characters and "..."
    # or "…": the token's prefix and first 8+ characters are still there.
    cut = {"ghp": "ghp_" + rand(11), "glpat": "glpat-" + rand(10), "pat": "github_pat_" + rand(9)}
    table = (
        '<table class="dataframe"><thead><tr><th></th><th>t</th></tr></thead><tbody>'
        + "".join(f"<tr><th>{i}</th><td>{v}...</td></tr>" for i, v in enumerate(cut.values()))
        + "</tbody></table>"
    )
    text = "\n".join(f"{i}  {v}\u2026" for i, v in enumerate(cut.values()))
    nb = new_notebook(
        cells=[
            new_code_cell(
                "df",
                outputs=[
                    new_output(
                        "execute_result",
                        data={"text/html": table, "text/plain": text},
                        execution_count=1,
                    )
                ],
            )
        ]
    )
    folder = write_bundle(build_report([nb]), tmp_path / "bundle")
    for path in folder.rglob("*"):
        if path.is_file():
            content = path.read_text(errors="replace")
            for value in cut.values():
                assert value not in content, f"{value[:6]}… in {path.name}"
