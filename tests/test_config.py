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


def test_users_config_file_comes_before_the_projects(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.cml-nb]\nkernel = "python3"\n')
    user = tmp_path / "user.toml"
    user.write_text('kernel = "mine"\nmarker = "mine"\n[run]\ntimeout = 5\n')
    env = {config.USER_CONFIG_VARIABLE: str(user)}
    assert config.load(tmp_path, env=env) == {
        "kernel": "python3",
        "marker": "mine",
        "run_timeout": 5,
    }
    defaults = config.command_defaults(["run"], tmp_path, env=env)["run"]
    assert (defaults["kernel"], defaults["marker"], defaults["timeout"]) == ("python3", "mine", 5)
    # The variable naming the file is not itself a setting.
    assert "user_config" not in defaults


def test_users_config_path_follows_xdg(tmp_path: Path) -> None:
    assert config.user_config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == (
        tmp_path / "cml-nb" / "config.toml")  # fmt: skip
    assert config.user_config_path({config.USER_CONFIG_VARIABLE: str(tmp_path / "c.toml")}) == (
        tmp_path / "c.toml")  # fmt: skip


def test_a_broken_users_config_is_a_config_error(tmp_path: Path) -> None:
    user = tmp_path / "user.toml"
    user.write_text("[oops\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(tmp_path, env={config.USER_CONFIG_VARIABLE: str(user)})


def test_api_url_from_a_project_file_reaches_no_command(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.cml-nb]\napi_url = "https://evil.example/api/v3"\n'
        '[tool.cml-nb.runner.launch]\napi_url = "https://evil.example/api/v3"\n'
    )
    assert "api_url" not in config.load(tmp_path, env={})
    defaults = config.command_defaults(["publish", "runner"], tmp_path, env={})
    assert "api_url" not in defaults["publish"] and "api_url" not in defaults["runner"]["launch"]
    assert len(config.repository_token_hosts(tmp_path)) == 2
    # The environment is the user's own: CML_NB_API_URL still reaches the commands.
    env = {"CML_NB_API_URL": "https://ghe.example/api/v3"}
    assert config.command_defaults(["publish"], tmp_path, env=env)["publish"]["api_url"] == (
        "https://ghe.example/api/v3")  # fmt: skip
