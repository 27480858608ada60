from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cml_nb import config
from cml_nb.cli import main
from cml_nb.errors import ConfigError

NOTEBOOKS = Path(__file__).parent / "notebooks"


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.cml-nb]\nkernel = "python3"\ntimeout = 10\n[tool.cml-nb.report]\nmax-chars = 100\n'
    )
    env = {"CML_NB_TIMEOUT": "20", "CML_NB_MARKER": "nightly", "OTHER": "x"}
    settings = config.load(tmp_path, env=env, flags={"marker": "flag", "kernel": None})
    assert settings == {
        "kernel": "python3", "timeout": 20, "report_max_chars": 100, "marker": "flag",
    }  # fmt: skip


def test_found_in_parent_folder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.cml-nb]\nmarker = "m"\n')
    (tmp_path / "sub").mkdir()
    assert config.load(tmp_path / "sub", env={})["marker"] == "m"


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.cml-nb\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(tmp_path, env={})


def test_command_defaults_apply_to_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A [tool.cml-nb.run] table sets `run`'s defaults; the flag still wins.
    (tmp_path / "pyproject.toml").write_text("[tool.cml-nb.run]\nallow-unknown = true\n")
    monkeypatch.chdir(tmp_path)
    nb = str(NOTEBOOKS / "trivial.ipynb")
    result = CliRunner().invoke(main, ["run", nb, "-o", "a/n.ipynb", "-p", "zz", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a" / "run.json").read_text())["parameters"]["zz"] == 1
    result = CliRunner().invoke(
        main, ["run", nb, "-o", "b/n.ipynb", "-p", "zz", "1"], env={"CML_NB_RUN_ALLOW_UNKNOWN": "0"}
    )
    assert result.exit_code == 2


def test_environment_beats_a_command_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.cml-nb]\ntimeout = 1\n[tool.cml-nb.run]\ntimeout = 2\n"
    )
    defaults = config.command_defaults(["run", "sweep"], tmp_path, env={"CML_NB_TIMEOUT": "3"})
    assert defaults["run"]["timeout"] == 3 and defaults["sweep"]["timeout"] == 3
    assert config.command_defaults(["run"], tmp_path, env={})["run"]["timeout"] == 2
