"""The forge emulator itself: spec checks, faults, pagination, runner registration."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from forge_emulator import ForgeEmulator, openapi, scenarios


def _call(url: str, token: str, method: str = "GET", body: object = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_vendored_subset_covers_every_github_route():
    emulator = ForgeEmulator()
    for route in emulator.router.routes:
        if route.forge == "github":
            assert route.op and openapi.operation(route.method, route.op), route.rule


def test_spec_violations_are_collected(forge_emulator: ForgeEmulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    base = f"{forge_emulator.github_api}/repos/octo/demo"
    status, _ = _call(f"{base}/check-runs", s.token, "POST", {"name": "x", "head_sha": "a" * 40,
                                                              "conclusion": "succes"})  # fmt: skip
    assert status == 201
    assert any("conclusion" in e for e in forge_emulator.spec_errors)
    _call(f"{base}/no-such-endpoint", s.token)
    assert any("no route" in e for e in forge_emulator.spec_errors)
    forge_emulator.spec_errors.clear()  # seen; the fixture would fail the test otherwise


def test_pagination_links_and_faults(forge_emulator: ForgeEmulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    url = f"{forge_emulator.github_api}/repos/octo/demo/issues/{s.pull.number}/comments"
    for i in range(3):
        assert _call(url, s.token, "POST", {"body": f"c{i}"})[0] == 201
    request = urllib.request.Request(
        url + "?per_page=2", headers={"Authorization": f"token {s.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert len(json.loads(response.read())) == 2
        assert 'rel="next"' in response.headers["Link"] and "page=2" in response.headers["Link"]
    fault = forge_emulator.faults.secondary_rate_limit("GET", r"/comments$", times=2)
    assert _call(url, s.token)[0] == 403
    assert _call(url, s.token)[0] == 403
    assert _call(url, s.token)[0] == 200 and fault.fired == 2
    assert _call(url, "wrong")[0] == 401


@pytest.mark.parametrize("forge", ["github", "gitlab"])
def test_runner_registration_endpoints(forge_emulator: ForgeEmulator, tmp_path, forge):
    if forge == "github":
        s = scenarios.github(forge_emulator, tmp_path, pull=False)
        base = f"{forge_emulator.github_api}/repos/octo/demo/actions/runners"
        assert _call(f"{base}/registration-token", s.token, "POST")[0] == 201
        status, made = _call(f"{base}/generate-jitconfig", s.token, "POST",
                             {"name": "gpu-1", "runner_group_id": 1, "labels": ["gpu"]})  # fmt: skip
        assert status == 201 and made["encoded_jit_config"]
        listed = _call(base, s.token)[1]
        assert [r["name"] for r in listed["runners"]] == ["gpu-1"]
        assert _call(f"{base}/{made['runner']['id']}", s.token, "DELETE")[0] == 204
        assert _call(base, s.token)[1]["total_count"] == 0
    else:
        s = scenarios.gitlab(forge_emulator, mr=False)
        api = forge_emulator.gitlab_api
        status, made = _call(f"{api}/user/runners", s.token, "POST",
                             {"runner_type": "project_type", "project_id": s.repo.id})  # fmt: skip
        assert status == 201 and made["token"].startswith("glrt-")
        assert [r["id"] for r in _call(f"{api}/projects/{s.repo.id}/runners", s.token)[1]] == [
            made["id"]
        ]
        assert _call(f"{api}/runners/{made['id']}", s.token, "DELETE")[0] == 204
