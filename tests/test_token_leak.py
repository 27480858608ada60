"""Generated fake tokens must appear nowhere: logs (debug level, every library), CLI
output, error messages, request bodies and URLs sent to the forge, files written."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from forge_emulator import scenarios

from cml_nb.cli import main


@pytest.fixture(autouse=True)
def _fast_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")


def _debug_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "github", "gitlab", "requests", "http.client", "cml_nb"):
        logging.getLogger(name).setLevel(logging.DEBUG)


def _haystacks(emulator, caplog, outputs: list[str], folder: Path) -> dict[str, str]:
    found = {"log": caplog.text + "\n".join(r.getMessage() for r in caplog.records)}
    found["outputs"] = "\n".join(outputs)
    for i, e in enumerate(emulator.exchanges):
        found[f"request {i} {e.method} {e.url}"] = (
            e.url + e.body.decode("latin-1") + repr(e.headers)
        )
    for path in folder.rglob("*"):
        # The input bundle was made by hand with the token in it, on purpose.
        if path.is_file() and "bundle" not in path.parts:
            found[str(path)] = path.read_bytes().decode("latin-1")
    for repo in emulator.state.repos.values():
        found[f"comments of {repo.full_name}"] = "\n".join(c.body for c in repo.all_comments())
    return found


def _assert_absent(secret: str, haystacks: dict[str, str]) -> None:
    for where, text in haystacks.items():
        assert secret not in text, f"token leaked into {where}"
        assert secret[4:24] not in text, f"part of the token leaked into {where}"


def test_github_token_never_leaks(forge_emulator, tmp_path, caplog):
    _debug_everything(caplog)
    s = scenarios.github(forge_emulator, tmp_path, app=False)
    folder = scenarios.bundle(
        tmp_path / "bundle", images=1, text=f"oops the notebook printed {s.token}"
    )
    runner = CliRunner()
    outputs = []
    env = {**s.env, "CML_NB_GITHUB_WRITE_INTERVAL": "0"}
    for args in (["publish", str(folder), "--check"], ["publish", str(folder), "--dry-run"],
                 ["-vv", "publish", str(folder), "--target", "pr/99"]):  # fmt: skip
        result = runner.invoke(main, args, env=env)
        outputs.append(result.output + repr(result.exception))
    bad = {**env, "GITHUB_TOKEN": scenarios.fake_token("ghp_")}
    result = runner.invoke(main, ["-vv", "publish", str(folder)], env=bad)
    assert result.exit_code == 4
    outputs.append(result.output)
    assert "rejected the token from GITHUB_TOKEN" in result.output
    assert "oops the notebook printed ***" in s.pull.comments[0].body  # published, masked
    _assert_absent(s.token, _haystacks(forge_emulator, caplog, outputs, tmp_path))
    _assert_absent(bad["GITHUB_TOKEN"], _haystacks(forge_emulator, caplog, outputs, tmp_path))


def test_gitlab_token_never_leaks_even_with_python_gitlab_debug(
    forge_emulator, tmp_path, caplog, capfd
):
    _debug_everything(caplog)
    s = scenarios.gitlab(forge_emulator)
    import http.client

    import gitlab

    # python-gitlab's own debug switch logs every request's headers; without its
    # masking, only cml-nb's log scrubbing stands between the token and the log.
    root_level = logging.getLogger().level
    gl = gitlab.Gitlab(forge_emulator.root, private_token=s.token)
    gl.enable_debug(mask_credentials=False)
    try:
        from cml_nb.publish import publish

        folder = scenarios.bundle(tmp_path / "bundle", images=1)
        publish(folder, env=s.env, check=True)
        with pytest.raises(Exception) as caught:
            publish(folder, env={**s.env, "GITLAB_TOKEN": scenarios.fake_token("glpat-")})
    finally:
        http.client.HTTPConnection.debuglevel = 0
        if "print" in vars(http.client):
            delattr(http.client, "print")
        logging.getLogger().setLevel(root_level)
    assert "PRIVATE-TOKEN" in caplog.text  # the headers really were logged
    captured = capfd.readouterr()
    outputs = [captured.out, captured.err, str(caught.value)]
    _assert_absent(s.token, _haystacks(forge_emulator, caplog, outputs, tmp_path))
