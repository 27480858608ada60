"""Contract test: the emulator answers like the real GitHub recorded in ``@octokit/fixtures``.

``@octokit/fixtures`` (npm) holds exchanges recorded against api.github.com. The test
fetches a pinned version from the npm registry with ``npm pack`` into a cache
(``$CML_NB_TEST_CACHE`` or ``~/.cache/cml-nb-test``; nothing vendored), checks its
integrity, and then, for every recorded exchange whose endpoint cml-nb itself calls
(found by running cml-nb's GitHub features against the emulator first), replays the
request on the emulator and asserts the answer has the recorded status, every
recorded field with the same JSON type (recursively), and the relevant headers.

Offline, the test fails with a message saying how to fetch the package; it skips
only when ``CML_NB_OFFLINE=1`` is set outside CI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from forge_emulator import ForgeEmulator, scenarios
from forge_emulator.state import Comment

PACKAGE = "@octokit/fixtures"
VERSION = "23.1.2"
#: ``npm view @octokit/fixtures@23.1.2 dist.integrity``: the tarball the registry published.
INTEGRITY = "sha512-niG+SVffZ/xzojT3CE6M7DlqX7H9aQ75A6Xxjt4N47CkqssKXpSy2k6+Tj5ntcI5uWW2D9POzKxwJDmBfR+sJw=="
#: Headers a client reads (rate limits, type, paging) and the emulator must send as GitHub does.
HEADERS = ("content-type", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
           "x-ratelimit-used", "x-ratelimit-resource", "x-github-media-type",
           "x-github-request-id", "link")  # fmt: skip
JSON_ACCEPT = ("application/vnd.github.v3+json", "application/json")


def _cache() -> Path:
    return Path(os.environ.get("CML_NB_TEST_CACHE") or Path.home() / ".cache" / "cml-nb-test")


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def _unavailable(why: str) -> None:
    hint = (f"cannot get {PACKAGE}@{VERSION} for the contract test ({why}): it is fetched with "
            f"`npm pack {PACKAGE}@{VERSION}` from the npm registry into {_cache()}; install "
            "Node.js/npm and allow registry.npmjs.org, or put the tarball there")  # fmt: skip
    if os.environ.get("CML_NB_OFFLINE") == "1" and not os.environ.get("CI"):
        pytest.skip(hint)
    pytest.fail(hint)


@pytest.fixture(scope="module")
def fixtures() -> Path:
    """The unpacked package (its ``scenarios/api.github.com`` folder)."""
    cache = _cache()
    tarball = cache / f"octokit-fixtures-{VERSION}.tgz"
    if not tarball.exists():
        npm = shutil.which("npm")
        if npm is None:
            _unavailable("npm is not installed")
        cache.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination",
                                   str(cache), "--silent"], capture_output=True, text=True,
                                  timeout=180, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            _unavailable("npm pack timed out")
        if done.returncode != 0 or not tarball.exists():
            _unavailable(f"npm pack failed: {(done.stderr or done.stdout).strip()[:300]}")
    if _integrity(tarball) != INTEGRITY:
        pytest.fail(f"{tarball} is not the published {PACKAGE}@{VERSION}: delete it and rerun")
    unpacked = cache / f"octokit-fixtures-{VERSION}"
    if not (unpacked / "package").is_dir():
        with tarfile.open(tarball) as archive:
            archive.extractall(unpacked, filter="data")
    return unpacked / "package" / "scenarios" / "api.github.com"


def _recorded(folder: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(folder.glob("*/normalized-fixture.json")):
        for exchange in json.loads(path.read_text()):
            exchange["scenario"] = path.parent.name
            found.append(exchange)
    return found


# -- what cml-nb calls --------------------------------------------------------------------


def _called_operations(emulator: ForgeEmulator, tmp_path: Path) -> set[tuple[str, str]]:
    """Every (method, OpenAPI path) cml-nb's GitHub features send, from a real run of them."""
    from cml_nb.forge.pulls import create_pull_request
    from cml_nb.publish import publish

    for folder in ("app", "user"):
        (tmp_path / folder).mkdir(parents=True)
    app = scenarios.github(emulator, tmp_path / "app")
    publish(scenarios.bundle(tmp_path / "a", images=1), env=app.env, cwd=tmp_path, check=True)
    publish(scenarios.bundle(tmp_path / "b", images=1, seed=9), env=app.env, cwd=tmp_path)
    emulator.state.repos.clear()  # again with a personal token: commit statuses, /user
    user = scenarios.github(emulator, tmp_path / "user", app=False, pull=False)
    publish(scenarios.bundle(tmp_path / "c", images=0), env=user.env, cwd=tmp_path, check=True)
    user.repo.actions_can_open_pulls = True
    work = tmp_path / "work"
    work.mkdir()
    (work / "m.json").write_text("{}")
    env = {**user.env, "GITHUB_REF_NAME": "main"}
    create_pull_request(["m.json"], env=env, cwd=work)
    create_pull_request(["m.json"], env=env, cwd=work, body="again")
    rules = {r.rule: r.op for r in emulator.router.routes if r.forge == "github" and r.op}
    return {(e.method, rules[e.route]) for e in emulator.exchanges
            if e.forge == "github" and e.route in rules}  # fmt: skip


# -- replaying a recorded exchange --------------------------------------------------------

FIXTURE_REPO = re.compile(r"^/repos/octokit-fixture-org/[^/]+")


def _shape(recorded: Any, answered: Any, where: str = "") -> list[str]:
    """Where ``answered`` lacks a recorded field or has another JSON type (recursively)."""
    if recorded is None:
        return []  # a null in the recording says nothing about the type
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
             dict: "object", type(None): "null"}  # fmt: skip
    if isinstance(recorded, float) and isinstance(answered, int) and not isinstance(answered, bool):
        answered = float(answered)
    if kinds[type(recorded)] != kinds[type(answered)]:
        return [f"{where or '<root>'}: {kinds[type(recorded)]} recorded, "
                f"{kinds[type(answered)]} answered"]  # fmt: skip
    if isinstance(recorded, dict):
        problems = []
        for name, value in recorded.items():
            if name not in answered:
                problems.append(f"{where}.{name}: recorded, missing")
            else:
                problems += _shape(value, answered[name], f"{where}.{name}")
        return problems
    if isinstance(recorded, list) and recorded and answered:
        return _shape(recorded[0], answered[0], f"{where}[0]")
    return []


def _arrange(emulator: ForgeEmulator, tmp_path: Path, exchange: dict[str, Any]) -> tuple[str, Any]:
    """Emulator state in which the recorded request means the same; the path and body to send."""
    folder = tmp_path / f"{exchange['scenario']}-{exchange['method']}"
    folder.mkdir(parents=True, exist_ok=True)
    s = scenarios.github(emulator, folder, app=False, pull=False)
    s.repo.owner.type = "Organization"  # the recordings' repositories belong to an organisation
    git = s.repo.git
    first = s.repo.head_sha()
    second = git.commit_files("main", {"b.txt": b"b"}, "second")
    body = exchange.get("body")
    path = FIXTURE_REPO.sub("/repos/octo/demo", exchange["path"])
    if isinstance(body, dict) and "sha" in body:  # the recorded fake shas name real commits here
        body = {**body, "sha": second if exchange["method"] == "patch" else first}
    if exchange["method"] == "patch" and "/git/refs/" in path:
        git.refs["heads/test"] = first  # the ref the recording had created just before
    path = path.replace("0" * 39 + "1", second)
    return path, body


def _send(emulator: ForgeEmulator, token: str, method: str, path: str, body: Any):  # type: ignore[no-untyped-def]
    data = None if body in (None, "") else json.dumps(body).encode()
    request = urllib.request.Request(emulator.github_api + path, data=data, method=method.upper(),
                                     headers={"Authorization": f"token {token}",
                                              "Accept": "application/vnd.github.v3+json",
                                              "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), error.headers


def test_emulator_answers_like_the_recorded_github(fixtures, tmp_path, monkeypatch):
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")
    called_on = ForgeEmulator()
    called_on.start()
    try:
        called = _called_operations(called_on, tmp_path / "calls")
        router = called_on.router
    finally:
        called_on.stop()
    compared, problems = [], []
    for exchange in _recorded(fixtures):
        accept = str(exchange.get("reqheaders", {}).get("accept", ""))
        if not accept.startswith(JSON_ACCEPT) or not isinstance(exchange["response"], dict | list):
            continue  # raw media types: cml-nb always asks for JSON
        if 300 <= exchange["status"] < 400:
            continue  # redirects of renamed repositories: not modelled, cml-nb renames nothing
        path = FIXTURE_REPO.sub("/repos/octo/demo", exchange["path"].split("?")[0])
        matched = router.match(exchange["method"].upper(), "/api/v3" + path)
        if matched is None or (exchange["method"].upper(), matched[0].op) not in called:
            continue
        emulator = ForgeEmulator()
        emulator.start()
        try:
            sent_path, body = _arrange(emulator, tmp_path, exchange)
            token = next(iter(emulator.state.tokens))
            status, answer, headers = _send(emulator, token, exchange["method"], sent_path, body)
        finally:
            emulator.stop()
        label = f"{exchange['scenario']}: {exchange['method'].upper()} {matched[0].op}"
        compared.append(label)
        if status != exchange["status"]:
            problems.append(f"{label}: status {status}, recorded {exchange['status']}")
        problems += [f"{label}: {p}" for p in _shape(exchange["response"], answer)]
        recorded_headers = {k.lower(): str(v) for k, v in exchange["headers"].items()}
        for name in HEADERS:
            if name in recorded_headers and headers.get(name) is None:
                problems.append(f"{label}: header {name} recorded, missing")
        if headers.get("content-type") != recorded_headers["content-type"]:
            problems.append(f"{label}: content-type {headers.get('content-type')!r}")
    # The recordings cover these calls of cml-nb's; fail loudly if that coverage vanishes.
    assert {"get-repository: GET /repos/{owner}/{repo}",
            "git-refs: POST /repos/{owner}/{repo}/git/refs",
            "git-refs: PATCH /repos/{owner}/{repo}/git/refs/{ref}",
            "create-status: POST /repos/{owner}/{repo}/statuses/{sha}"} <= set(compared), compared  # fmt: skip
    assert not problems, "\n".join(problems)


def test_validation_errors_have_the_recorded_shape(fixtures, forge_emulator, tmp_path):
    """The 422 that cml-nb can meet (a PR onto a missing base) is shaped like GitHub's 422s."""
    (recorded,) = [e for e in _recorded(fixtures) if e["scenario"] == "errors"]
    s = scenarios.github(forge_emulator, tmp_path, app=False, pull=False)
    s.repo.git.refs["heads/topic"] = s.repo.head_sha()  # the head exists, the base does not
    status, answer, _ = _send(forge_emulator, s.token, "post", "/repos/octo/demo/pulls",
                              {"title": "t", "head": "topic", "base": "nope"})  # fmt: skip
    assert status == recorded["status"] == 422
    assert _shape(recorded["response"], answer) == []
    assert answer["errors"][0]["field"] == "base"


def test_pagination_links_have_the_recorded_form(fixtures, forge_emulator, tmp_path):
    (first,) = [e for e in _recorded(fixtures)
                if e["scenario"] == "paginate-issues" and "&page=" not in e["path"]]  # fmt: skip
    recorded = dict(
        re.findall(r'<[^>]*[?&]page=(\d+)[^>]*>; rel="(\w+)"', first["headers"]["link"])
    )
    s = scenarios.github(forge_emulator, tmp_path)
    for i in range(13):
        s.pull.comments.append(Comment(forge_emulator.state.next_id(), f"c{i}", s.repo.owner))
    _, _, headers = _send(forge_emulator, s.token, "get",
                          f"/repos/octo/demo/issues/{s.pull.number}/comments?per_page=3", None)  # fmt: skip
    answered = dict(re.findall(r'<[^>]*[?&]page=(\d+)[^>]*>; rel="(\w+)"', headers["link"]))
    assert sorted(answered.values()) == sorted(recorded.values()) == ["last", "next"]
    assert {v: k for k, v in answered.items()}["next"] == "2"
