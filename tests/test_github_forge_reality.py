"""GitHub as it really behaves (issue 12): edits retried, rate limits waited out as GitHub
asks, refusals explained, and the ``permissions:`` block ``cml-nb init`` writes is enough.

Everything runs through the real PyGithub against the forge emulator; waits are real
and short, and ``CML_NB_GITHUB_MAX_WAIT`` bounds the ones a test must not sit through.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest
from forge_emulator import scenarios

from cml_nb.errors import ForgeAuthError, ForgeError, RateLimitedError
from cml_nb.forge.pulls import create_pull_request
from cml_nb.publish import publish


@pytest.fixture(autouse=True)
def _fast_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")


def _publish(s: scenarios.Scenario, folder: Path, **kw: object):  # type: ignore[no-untyped-def]
    return publish(folder, env=s.env, cwd=folder, **kw)  # type: ignore[arg-type]


def _limited(emulator, status: int) -> int:  # type: ignore[no-untyped-def]
    """Answers refused by the token's exhausted primary rate limit."""
    return sum(1 for e in emulator.exchanges if e.route == "rate-limit" and e.status == status)


# -- item 1: PATCH edits are retried ---------------------------------------------------


@pytest.mark.parametrize("fault", ["bad_gateway", "too_many_requests", "secondary_rate_limit"])
def test_the_sticky_comment_update_survives_a_transient_error(forge_emulator, tmp_path, fault):
    s = scenarios.github(forge_emulator, tmp_path)
    _publish(s, scenarios.bundle(tmp_path / "a", images=0))
    getattr(forge_emulator.faults, fault)("PATCH", r"/issues/comments/\d+$")
    second = _publish(s, scenarios.bundle(tmp_path / "b", images=0, text="second run"))
    assert second.action == "updated"
    (comment,) = s.pull.comments
    assert "second run" in comment.body
    assert len(forge_emulator.requests("PATCH", "/issues/comments/")) == 2  # failed, then retried


def test_the_assets_branch_ref_update_survives_a_502(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    _publish(s, scenarios.bundle(tmp_path / "a", images=1))
    forge_emulator.faults.bad_gateway("PATCH", r"/git/refs/heads/cml-nb-assets$")
    second = _publish(s, scenarios.bundle(tmp_path / "b", images=1, seed=7))
    assert len(second.uploaded) == 1
    tip = s.repo.git.refs["heads/cml-nb-assets"]
    assert second.uploaded[0] in s.repo.git.flat_files(s.repo.git.commits[tip]["tree"])


def test_the_pull_request_edit_survives_a_429(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path, pull=False)
    s.env["GITHUB_REF_NAME"] = "main"
    s.repo.actions_can_open_pulls = True
    work = tmp_path / "work"
    work.mkdir()
    (work / "metrics.json").write_text('{"a": 1}')
    first = create_pull_request(["metrics.json"], env=s.env, cwd=work, body="one")
    forge_emulator.faults.too_many_requests("PATCH", r"/pulls/\d+$")
    again = create_pull_request(["metrics.json"], env=s.env, cwd=work, body="two")
    assert (again.action, again.number) == ("updated", first.number)
    assert s.repo.pulls[first.number].body == "two"


def test_an_edit_that_keeps_failing_says_truly_that_it_was_retried(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    _publish(s, scenarios.bundle(tmp_path / "a", images=0))
    forge_emulator.faults.bad_gateway("PATCH", r"/issues/comments/\d+$", times=100)
    with pytest.raises(ForgeError, match="after 5 retries") as caught:
        _publish(s, scenarios.bundle(tmp_path / "b", images=0, text="x"))
    assert len(forge_emulator.requests("PATCH", "/issues/comments/")) == 6  # 1 try + 5 retries
    assert "\n" not in str(caught.value)


# -- item 8: rate limits wait as GitHub asks ------------------------------------------------


@pytest.mark.parametrize("status", [403, 429])
def test_a_primary_limit_waits_until_the_reset_then_goes_on(forge_emulator, tmp_path, status,
                                                            caplog):  # fmt: skip
    s = scenarios.github(forge_emulator, tmp_path)
    forge_emulator.state.tokens[s.token].rate.exhaust(reset_in=2, status=status)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="cml_nb"):
        result = _publish(s, scenarios.bundle(tmp_path / "b", images=0))
    assert result.action == "created" and len(s.pull.comments) == 1
    # One refused request, then a wait until x-ratelimit-reset; no retry storm in between.
    assert _limited(forge_emulator, status) == 1
    assert time.monotonic() - started >= 1.5
    assert re.search(r"primary rate limit, resets at \d\d:\d\d:\d\d UTC\): waiting \d s",
                     caplog.text)  # fmt: skip


@pytest.mark.parametrize("status", [403, 429])
def test_a_primary_limit_too_far_away_fails_at_once_with_the_reset_time(forge_emulator, tmp_path,
                                                                       status):  # fmt: skip
    s = scenarios.github(forge_emulator, tmp_path)
    budget = forge_emulator.state.tokens[s.token].rate
    budget.exhaust(reset_in=3000, status=status)
    started = time.monotonic()
    with pytest.raises(RateLimitedError) as caught:
        _publish(s, scenarios.bundle(tmp_path / "b", images=0))
    assert time.monotonic() - started < 5
    reset = time.strftime("%H:%M:%S UTC", time.gmtime(int(budget.reset_at)))
    message = str(caught.value)
    assert f"resets at {reset}" in message and "CML_NB_GITHUB_MAX_WAIT" in message
    assert "\n" not in message
    assert _limited(forge_emulator, status) == 1  # not retried into the wall


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_limit_without_retry_after_waits_at_least_a_minute(forge_emulator, tmp_path,
                                                                      monkeypatch, status):  # fmt: skip
    s = scenarios.github(forge_emulator, tmp_path)
    # Bound the waits below a minute: the publish must refuse to retry sooner than GitHub asks.
    monkeypatch.setenv("CML_NB_GITHUB_MAX_WAIT", "59")
    forge_emulator.faults.secondary_rate_limit("POST", r"/issues/\d+/comments$", retry_after=None,
                                               status=status)  # fmt: skip
    with pytest.raises(RateLimitedError, match=r"secondary rate limit .*wait of 60 s"):
        _publish(s, scenarios.bundle(tmp_path / "b", images=0))
    assert s.pull.comments == []
    assert len(forge_emulator.requests("POST", "/comments")) == 1


def test_every_github_answer_carries_the_rate_limit_headers(forge_emulator, tmp_path):
    import urllib.request

    s = scenarios.github(forge_emulator, tmp_path)
    for url in (f"{forge_emulator.github_api}/repos/octo/demo",
                f"{forge_emulator.github_api}/repos/octo/demo/pulls/999"):  # fmt: skip
        request = urllib.request.Request(url, headers={"Authorization": f"token {s.token}"})
        try:
            response = urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as error:
            response = error
        names = {k.lower() for k in response.headers}
        assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-used",
                "x-ratelimit-reset", "x-ratelimit-resource"} <= names  # fmt: skip
        assert response.headers["x-ratelimit-limit"] == "1000"  # GITHUB_TOKEN's hourly budget


# -- item 9: refusals keep their reason ------------------------------------------------------


def test_a_422_shows_githubs_errors_list(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path, pull=False)
    s.repo.actions_can_open_pulls = True
    work = tmp_path / "work"
    work.mkdir()
    (work / "m.json").write_text("{}")
    with pytest.raises(ForgeError) as caught:
        create_pull_request(["m.json"], env=s.env, cwd=work, base="no-such-branch")
    assert "422 Validation Failed: PullRequest base: invalid" in str(caught.value)


def test_a_fork_pull_request_gets_workflow_run_advice_not_permissions_advice(forge_emulator,
                                                                            tmp_path):  # fmt: skip
    s = scenarios.github(forge_emulator, tmp_path, fork=True)
    with pytest.raises(ForgeAuthError) as caught:
        _publish(s, scenarios.bundle(tmp_path / "b", images=0))
    message = str(caught.value)
    assert "fork" in message and "workflow_run" in message
    assert "add `permissions" not in message


def test_a_locked_conversation_gets_its_own_advice(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    s.pull.locked = True
    with pytest.raises(ForgeAuthError, match="conversation is locked") as caught:
        _publish(s, scenarios.bundle(tmp_path / "b", images=0))
    assert "permissions:" not in str(caught.value)


def test_actions_not_permitted_to_open_pull_requests_names_the_setting(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path, pull=False)
    s.env["GITHUB_REF_NAME"] = "main"
    work = tmp_path / "work"
    work.mkdir()
    (work / "m.json").write_text("{}")
    with pytest.raises(ForgeAuthError, match="Allow GitHub Actions to create and approve"):
        create_pull_request(["m.json"], env=s.env, cwd=work)


# -- the permission model: exactly what `cml-nb init --forge github` grants ------------------


def test_the_init_permissions_block_is_enough_to_publish_with_images_and_a_check(
    forge_emulator, tmp_path
):
    granted = scenarios.init_permissions()
    assert granted == {"contents", "pull_requests", "checks"}  # no `issues: write`
    s = scenarios.github(forge_emulator, tmp_path, permissions=granted)
    first = _publish(s, scenarios.bundle(tmp_path / "a", images=1), check=True)
    second = _publish(s, scenarios.bundle(tmp_path / "b", images=1, seed=3), check=True)
    assert (first.action, second.action) == ("created", "updated")
    assert len(s.pull.comments) == 1 and len(s.repo.check_runs) == 2


def test_pull_requests_write_alone_comments_on_a_pr_but_not_on_an_issue(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path, permissions={"pull_requests"})
    assert _publish(s, scenarios.bundle(tmp_path / "a", images=0)).action == "created"
    issue = forge_emulator.state.add_issue(s.repo)
    with pytest.raises(ForgeAuthError, match="issues: write"):
        _publish(s, scenarios.bundle(tmp_path / "b", images=0), target=f"issue/{issue.number}")


def test_a_limit_that_keeps_coming_back_ends_as_rate_limited_not_an_outage(forge_emulator,
                                                                           tmp_path):  # fmt: skip
    s = scenarios.github(forge_emulator, tmp_path)
    forge_emulator.faults.secondary_rate_limit("POST", r"/issues/\d+/comments$", retry_after=0,
                                               times=100)  # fmt: skip
    with pytest.raises(RateLimitedError, match="kept rate-limiting .*after 5 retries") as caught:
        _publish(s, scenarios.bundle(tmp_path / "b", images=0))
    assert "githubstatus" not in str(caught.value)
    assert len(forge_emulator.requests("POST", "/comments")) == 6


# -- what a publish costs (issue 12's measurement; GITHUB_TOKEN has 1,000 requests an hour) ---


def test_requests_one_publish_costs(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path, permissions=scenarios.init_permissions())
    costs = []
    for name, seed in (("first", 0), ("same-image", 0), ("new-image", 5)):
        before = len(forge_emulator.exchanges)
        _publish(s, scenarios.bundle(tmp_path / name, images=1, seed=seed, text=name))
        costs.append(len(forge_emulator.exchanges) - before)
    # Was 12, 7 and 13: GET /user (always 403 for GITHUB_TOKEN), GET of the repository for
    # image links and a second read of the assets ref are no longer sent. The third is
    # 11 + 1: before committing to the existing assets branch, GET .../branches/{branch}
    # checks that it is not protected.
    assert costs == [10, 6, 12]
