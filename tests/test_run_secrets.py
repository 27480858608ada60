"""Secrets never reach what `cml-nb run` writes or logs (issue 14, items 4 to 6).

Fake tokens are generated at test time; the notebook receives them as parameters
and shows them every way a notebook can (JSON, vendor JSON, JavaScript, SVG, a
widget, log_param/log_metric, a pandas table that cuts them short); then every
file the run wrote, its stderr and every request to the forge are searched.
"""

from __future__ import annotations

import os
import secrets
import string
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from forge_emulator import scenarios

from cml_nb.cli import main

v4 = nbformat.v4
ALNUM = string.ascii_letters + string.digits


def fake_token() -> str:
    return "ghp_" + "".join(secrets.choice(ALNUM) for _ in range(36))


def fake_password() -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(28))


def parameters_cell(source: str) -> nbformat.NotebookNode:
    cell = v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def pieces(secret: str) -> list[str]:
    """The secret and the parts of it a reader could use: a known prefix plus 8 chars,
    or the first 10 characters of a secret value."""
    return (
        [secret, secret[:12], secret[4:24]] if secret.startswith("ghp_") else [secret, secret[:10]]
    )


def assert_nowhere(secret: str, haystacks: dict[str, str]) -> None:
    for where, text in haystacks.items():
        for piece in pieces(secret):
            assert piece not in text, f"{piece!r} of a secret is in {where}"


def files_under(folder: Path) -> dict[str, str]:
    return {
        str(p): p.read_bytes().decode("utf-8", errors="replace")
        for p in folder.rglob("*")
        if p.is_file()
    }


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cml_nb", *args],
        capture_output=True, text=True, timeout=240, cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip


SHOWS_EVERYTHING = [
    parameters_cell("token = ''\ndb_password = ''"),
    v4.new_code_cell(
        "from IPython.display import JSON, SVG, Javascript, display\n"
        "display(JSON({'auth': token, 'nested': [{'password': db_password}]}))\n"
        "display({'application/vnd.acme.report+json': {'k': [token, db_password]},\n"
        "         'text/plain': 'acme'}, raw=True)\n"
        "display(Javascript(f\"var t = '{token}'; var p = '{db_password}';\"))\n"
        "display(SVG(f'<svg xmlns=\"http://www.w3.org/2000/svg\"><text>{token} {db_password}'\n"
        "            '</text></svg>'))"
    ),
    v4.new_code_cell(
        "import ipywidgets as widgets\n"
        "widgets.VBox([widgets.Text(value=token), widgets.Label(value=db_password)])"
    ),
    v4.new_code_cell(
        "from cml_nb import log_metric, log_param\n"
        "log_param('api_key', db_password)\n"
        "log_param('which', token)\n"
        "log_metric('tag', token)\n"
        "log_metric('accuracy', 0.9)"
    ),
    v4.new_code_cell(
        "import pandas as pd\n"
        "pd.set_option('display.max_colwidth', 16)\n"
        "pd.DataFrame({'t': [token], 'p': [db_password]})"
    ),
    v4.new_code_cell("print(token[:12] + '\u2026', db_password[:14] + '...')"),
]


def test_no_secret_in_any_mime_type_record_or_log(tmp_path: Path) -> None:
    token, password = fake_token(), fake_password()
    source = tmp_path / "shows.ipynb"
    nbformat.write(v4.new_notebook(cells=SHOWS_EVERYTHING), source)
    done = run_cli(
        "-vv", "run", str(source), "-o", "out/shows.ipynb", "--log-output",
        "-p", "token", token, "-p", "db_password", password, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    written = files_under(out)
    assert {"run.json", "metrics.json", "shows.ipynb", "report.md", "report.json"} <= {
        Path(p).name for p in written
    }
    executed = nbformat.read(out / "shows.ipynb", as_version=4)
    assert executed.metadata["widgets"], "the widget state was saved (so it was searched)"
    haystacks = {**written, "stderr": done.stderr, "stdout": done.stdout}
    assert_nowhere(token, haystacks)
    assert_nowhere(password, haystacks)
    assert '"accuracy": 0.9' in written[str(out / "metrics.json")]


def test_log_output_masks_a_token_flushed_in_two_writes(tmp_path: Path) -> None:
    token = fake_token()
    split = v4.new_code_cell(
        "import sys, time\n"
        "sys.stdout.write(token[:10]); sys.stdout.flush(); time.sleep(0.5)\n"
        "sys.stdout.write(token[10:] + ' done\\n'); sys.stdout.flush()\n"
        "sys.stderr.write(token[:7]); sys.stderr.flush(); time.sleep(0.5)\n"
        "print(token[7:], file=sys.stderr)"
    )
    source = tmp_path / "split.ipynb"
    nbformat.write(v4.new_notebook(cells=[parameters_cell("token = ''"), split]), source)
    done = run_cli(
        "run", str(source), "-o", "out/n.ipynb", "--no-report", "--log-output",
        "-p", "token", token, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "*** done" in done.stderr  # the line still shows, masked whole
    for piece in (token[:10], token[10:], token[:7], token[7:]):
        assert piece not in done.stderr


def test_debug_log_shows_neither_the_parameters_cell_nor_raw_outputs(tmp_path: Path) -> None:
    password = fake_password()
    cells = [
        parameters_cell("db_password = ''"),
        v4.new_code_cell("db_password[:5], db_password[5:]"),
    ]
    source = tmp_path / "vv.ipynb"
    nbformat.write(v4.new_notebook(cells=cells), source)
    done = run_cli(
        "-vv", "run", str(source), "-o", "out/n.ipynb", "--no-report", "--no-log-output",
        "-p", "db_password", password, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "DEBUG" in done.stderr  # the debug log was on
    for piece in (password, password[:5], password[5:]):
        assert piece not in done.stderr


@pytest.mark.parametrize(
    ("name", "default", "value"),
    [("api_key", "0", fake_password()), ("n", "1", fake_token())],
)
def test_type_mismatch_error_never_echoes_the_value(
    tmp_path: Path, name: str, default: str, value: str
) -> None:
    source = tmp_path / "typed.ipynb"
    nbformat.write(v4.new_notebook(cells=[parameters_cell(f"{name} = {default}")]), source)
    result = CliRunner().invoke(main, ["run", str(source), "-p", name, value])
    assert result.exit_code == 2
    assert f"parameter {name!r} expects int" in result.output
    assert "***" in result.output
    for piece in pieces(value):
        assert piece not in result.output


def test_live_updates_are_masked_like_the_final_report(forge_emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")
    s = scenarios.github(forge_emulator, tmp_path)
    password = fake_password()
    cells = [parameters_cell("db_password = ''")]
    for step in range(3):
        cells += [v4.new_code_cell(f"print('step {step}', db_password)"),
                  v4.new_code_cell("import time; time.sleep(1.2)")]  # fmt: skip
    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook = tmp_path / "slow.ipynb"
    nbformat.write(nb, notebook)
    result = CliRunner().invoke(
        main,
        ["run", str(notebook), "--no-progress", "--publish", "--live", "1",
         "-p", "db_password", password],
        # A generous live budget, so updates come every second (cml_nb/live.py).
        env={**s.env, "CML_NB_LIVE_BUDGET": "36000"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    bodies = [e.body.decode("utf-8", errors="replace") for e in forge_emulator.exchanges
              if e.method in ("POST", "PATCH") and "/comments" in e.url]  # fmt: skip
    live = [b for b in bodies if "running:" in b]
    assert live, "no live update was posted"
    assert any("step 0 ***" in b for b in live), live[0][:3000]
    haystacks = {f"request {i}": b for i, b in enumerate(bodies)}
    haystacks["final comment"] = s.pull.comments[0].body
    assert_nowhere(password, haystacks)
