"""Where the token goes (issue 12 item 5, issue 14 item 2).

Git remotes map to the right API and web URLs (SSH over 443, GitHub Enterprise Cloud
with data residency); an unknown self-hosted host is an error that asks for --api-url,
never a fallback to a public forge; a repository's pyproject.toml cannot choose the
host, only the CI environment, the command line or the user's own config can.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from forge_emulator import ForgeEmulator, scenarios

from cml_nb import config
from cml_nb.cli import main
from cml_nb.errors import ConfigError
from cml_nb.forge import hosts
from cml_nb.forge.connect import context_for, token_destination
from cml_nb.forge.context import detect


def _checkout(folder: Path, remote: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for args in (["init", "-q", "-b", "topic"],
                 ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x"],
                 ["remote", "add", "origin", remote]):  # fmt: skip
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, timeout=30)
    return folder


@pytest.mark.parametrize(
    ("remote", "forge", "api"),
    [
        ("ssh://git@ssh.github.com:443/octo/demo.git", "github", "https://api.github.com"),
        ("git@github.com:octo/demo.git", "github", "https://api.github.com"),
        ("ssh://git@altssh.gitlab.com:443/grp/proj.git", "gitlab", "https://gitlab.com/api/v4"),
        ("git@octo.ghe.com:octo/demo.git", "github", "https://api.octo.ghe.com"),
        ("https://octo.ghe.com/octo/demo.git", "github", "https://api.octo.ghe.com"),
        ("git@github.corp.example:octo/demo.git", "github", "https://github.corp.example/api/v3"),
        (
            "https://gitlab.corp.example/grp/proj.git",
            "gitlab",
            "https://gitlab.corp.example/api/v4",
        ),
    ],
)
def test_remotes_map_to_their_api(tmp_path: Path, remote: str, forge: str, api: str) -> None:
    ctx = detect({}, _checkout(tmp_path / "repo", remote))
    assert (ctx.forge, ctx.api_url) == (forge, api)


@pytest.mark.parametrize(
    ("api", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://api.octo.ghe.com", "https://octo.ghe.com"),
        ("https://github.corp.example/api/v3/", "https://github.corp.example"),
        ("https://gitlab.com/api/v4", "https://gitlab.com"),
        ("https://corp.example/gitlab/api/v4", "https://corp.example/gitlab"),
    ],
)
def test_web_urls_from_api_urls(api: str, web: str) -> None:
    assert hosts.web_url_for_api(api) == web


def test_runner_registration_urls_follow_the_host() -> None:
    from cml_nb.runner.registration import GitHubRunners, GitLabRunners

    token = scenarios.fake_token("ghp_")
    ghe = GitHubRunners("octo/demo", token=token, api_url="https://api.octo.ghe.com")
    assert ghe.web_url == "https://octo.ghe.com/octo/demo"
    public = GitHubRunners("octo/demo", token=token, api_url="https://api.github.com")
    assert public.web_url == "https://github.com/octo/demo"
    lab = GitLabRunners("grp/proj", token=scenarios.fake_token("glpat-"),
                        url="https://gitlab.corp.example/api/v4")  # fmt: skip
    assert lab.url == "https://gitlab.corp.example"


def test_unknown_host_asks_for_api_url_and_sends_nothing(tmp_path: Path, monkeypatch) -> None:
    repo = _checkout(tmp_path / "repo", "git@git.corp.example:team/proj.git")
    env = {"GITLAB_TOKEN": scenarios.fake_token("glpat-")}
    with pytest.raises(ConfigError, match="--api-url") as caught:
        context_for(forge="gitlab", env=env, cwd=repo)
    assert "git.corp.example" in str(caught.value) and "gitlab.com" not in str(caught.value)
    with pytest.raises(ConfigError, match="--api-url"):
        context_for(forge="github", env={"GITHUB_TOKEN": "ghp_x" * 8}, cwd=repo)
    with pytest.raises(ConfigError, match=r"--forge github\|gitlab and --api-url"):
        context_for(env=env, cwd=repo)
    # The CLI says it in one line with exit code 2.
    monkeypatch.chdir(repo)
    folder = scenarios.bundle(tmp_path / "bundle", images=0)
    result = CliRunner().invoke(main, ["publish", str(folder), "--forge", "gitlab"], env=env)
    assert result.exit_code == 2 and "--api-url" in result.output
    assert "Traceback" not in result.output and env["GITLAB_TOKEN"] not in result.output


def test_no_checkout_and_no_ci_means_the_public_forge(tmp_path: Path) -> None:
    ctx = context_for(forge="github", repo="o/r", env={}, cwd=tmp_path)
    assert ctx.api_url == "https://api.github.com"
    assert context_for(forge="gitlab", repo="g/p", env={}, cwd=tmp_path).api_url == (
        "https://gitlab.com/api/v4")  # fmt: skip


def test_the_users_config_names_an_unknown_host(forge_emulator, tmp_path, monkeypatch) -> None:
    s = scenarios.gitlab(forge_emulator, mr=False)
    issue = forge_emulator.state.add_issue(s.repo)
    repo = _checkout(tmp_path / "repo", "git@git.corp.example:grp/proj.git")
    user = tmp_path / "home" / "config.toml"
    user.parent.mkdir()
    user.write_text(f'[hosts."git.corp.example"]\nforge = "gitlab"\n'
                    f'api_url = "{forge_emulator.gitlab_api}"\n')  # fmt: skip
    env = {"GITLAB_TOKEN": s.token, config.USER_CONFIG_VARIABLE: str(user)}
    assert token_destination(env=env, cwd=repo, target="auto") == forge_emulator.gitlab_api
    monkeypatch.chdir(repo)
    folder = scenarios.bundle(tmp_path / "bundle", images=0)
    result = CliRunner().invoke(main, ["publish", str(folder), "--target", f"issue/{issue.number}"],
                                env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(issue.comments) == 1


def test_bad_user_host_entries_are_one_line_errors(tmp_path: Path) -> None:
    user = tmp_path / "config.toml"
    user.write_text('[hosts."git.corp.example"]\nforge = "bitbucket"\n')
    with pytest.raises(ConfigError, match=r'hosts\."git.corp.example"'):
        config.user_hosts({config.USER_CONFIG_VARIABLE: str(user)})


# -- issue 14 item 2: repository config never redirects the token ---------------------


@pytest.fixture
def elsewhere():
    """A second forge emulator: the host a hostile pyproject.toml points at."""
    emulator = ForgeEmulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _hostile(folder: Path, api_url: str, table: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    header = f"[tool.cml-nb.{table}]" if table else "[tool.cml-nb]"
    (folder / "pyproject.toml").write_text(f'{header}\napi_url = "{api_url}"\n')
    return folder


@pytest.mark.parametrize("table", ["", "publish"])
def test_repository_api_url_is_refused_and_gets_no_token(
    forge_emulator, elsewhere, tmp_path, monkeypatch, table
) -> None:
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")
    s = scenarios.github(forge_emulator, tmp_path)
    project = _hostile(tmp_path / "clone", elsewhere.github_api, table)
    monkeypatch.chdir(project)
    for name, value in s.env.items():
        monkeypatch.setenv(name, value)
    folder = scenarios.bundle(tmp_path / "bundle", images=0)
    result = CliRunner().invoke(main, ["publish", str(folder)])
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.output.splitlines() if x.strip()]
    assert "cannot choose where your token goes" in line and forge_emulator.github_api in line
    assert elsewhere.exchanges == [] and s.pull.comments == []
    with pytest.raises(ConfigError, match="api_url"):
        token_destination(cwd=project)


def test_repository_api_url_that_agrees_with_ci_is_fine(forge_emulator, tmp_path) -> None:
    s = scenarios.gitlab(forge_emulator)
    project = _hostile(tmp_path / "clone", forge_emulator.gitlab_api + "/")
    assert token_destination(env=s.env, cwd=project) == forge_emulator.gitlab_api
    gitlab_ci = {**s.env, "CI_API_V4_URL": "https://gitlab.example/api/v4"}
    with pytest.raises(ConfigError, match="CI_API_V4_URL"):
        context_for(env=gitlab_ci, cwd=project)


def test_no_file_hands_api_url_to_the_commands(tmp_path: Path) -> None:
    project = _hostile(tmp_path / "clone", "https://evil.example/api/v3", "publish")
    user = tmp_path / "config.toml"
    user.write_text('api_url = "https://also.example/api/v3"\nmarker = "mine"\n')
    defaults = config.command_defaults(["publish"], project,
                                       env={config.USER_CONFIG_VARIABLE: str(user)})  # fmt: skip
    assert "api_url" not in defaults["publish"] and defaults["publish"]["marker"] == "mine"
    assert config.repository_token_hosts(project) == {
        f"{project / 'pyproject.toml'} [tool.cml-nb] publish.api_url": "https://evil.example/api/v3"
    }
