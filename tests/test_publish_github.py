"""Publishing to GitHub through the real PyGithub against the forge emulator."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from forge_emulator import scenarios

from cml_nb.errors import ForgeAuthError, TargetNotFoundError
from cml_nb.forge import comments as sticky
from cml_nb.history.comments import report_metrics
from cml_nb.publish import known_urls, publish


@pytest.fixture(autouse=True)
def _fast_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    # PyGithub waits 1 s between writes by default (GitHub's advice); not needed on 127.0.0.1.
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")


def _publish(scenario: scenarios.Scenario, folder: Path, **kw: object) -> object:
    return publish(folder, env=scenario.env, cwd=folder, **kw)  # type: ignore[arg-type]


def test_two_publishes_leave_one_comment_updated_and_upload_images_once(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    folder = scenarios.bundle(tmp_path / "b1", images=2)
    first = _publish(s, folder)
    assert first.action == "created" and first.target.kind == "pr"
    assert first.target.number == s.pull.number
    assert len(first.uploaded) == 2 and first.reused == []
    blobs_after_first = len(forge_emulator.requests("POST", "/git/blobs"))

    again = scenarios.bundle(tmp_path / "b2", images=2, text="Accuracy went up again.")
    second = _publish(s, again)
    assert second.action == "updated" and second.url == first.url
    assert second.uploaded == [] and len(second.reused) == 2
    assert len(forge_emulator.requests("POST", "/git/blobs")) == blobs_after_first
    assert not forge_emulator.requests("POST", "/git/commits")[blobs_after_first:]

    comments = s.pull.comments
    assert len(comments) == 1
    body = comments[0].body
    assert "Accuracy went up again." in body and sticky.has_marker(body, "train")
    assert sticky.parse_metrics(body)["metrics"] == {"accuracy": 0.91, "loss": 0.2}
    assert sticky.parse_metrics(body)["sha"] == s.pull.head_sha  # the PR head, not the merge commit


def test_image_links_serve_the_image_bytes(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    result = _publish(s, scenarios.bundle(tmp_path / "b", images=1))
    urls = known_urls([type("C", (), {"body": result.body})()])  # the links in the body
    assert len(urls) == 1
    ((name, url),) = urls.items()
    assert "/blob/cml-nb-assets/" in url and url.endswith("?raw=true")
    reader = urllib.request.Request(url, headers={"Authorization": f"token {s.token}"})
    with urllib.request.urlopen(reader, timeout=10) as response:  # a signed-in reader
        assert response.read() == scenarios.png(0)
    with pytest.raises(urllib.error.HTTPError) as anonymous:  # the repository is private
        urllib.request.urlopen(url, timeout=10)
    assert anonymous.value.code == 404
    assets = s.repo.git.refs["heads/cml-nb-assets"]
    assert s.repo.git.commits[assets]["parents"] == []  # an orphan branch


@pytest.mark.parametrize("fault", ["bad_gateway", "too_many_requests", "secondary_rate_limit"])
def test_publish_survives_transient_faults_without_duplicates(forge_emulator, tmp_path, fault):
    s = scenarios.github(forge_emulator, tmp_path)
    inject = getattr(forge_emulator.faults, fault)
    inject("GET", r"/issues/\d+/comments$", times=1)
    inject("POST", r"/issues/\d+/comments$", times=1)
    inject("POST", r"/git/blobs$", times=1)
    result = _publish(s, scenarios.bundle(tmp_path / "b"))
    assert result.action == "created"
    assert len(s.pull.comments) == 1
    assert sum(f.fired for f in forge_emulator.faults._faults) == 3


def test_a_lost_response_to_the_comment_post_leaves_no_duplicate(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    # The comment is created but the 502 hides it; the retry creates a second one.
    forge_emulator.faults.bad_gateway("POST", r"/issues/\d+/comments$", after=True)
    _publish(s, scenarios.bundle(tmp_path / "b"))
    assert len(s.pull.comments) == 1


def test_concurrent_publishes_to_the_same_pr_leave_one_comment(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    folders = [scenarios.bundle(tmp_path / f"b{i}", images=0, text=f"job {i}") for i in range(2)]
    # Posting is slow, so each job lists the (still empty) comments before the other's post lands.
    forge_emulator.faults.add("POST", r"/issues/\d+/comments$", 0, times=2, delay=1.5)
    errors: list[BaseException] = []

    def job(folder: Path) -> None:
        try:
            _publish(s, folder)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(f,)) for f in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(s.pull.comments) == 1
    assert len(forge_emulator.requests("POST", "/comments")) == 2  # both did post


def test_missing_permission_fails_at_once_with_the_fix(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path, permissions={"contents", "checks"})
    with pytest.raises(ForgeAuthError) as caught:
        _publish(s, scenarios.bundle(tmp_path / "b", images=0))
    message = str(caught.value)
    assert "pull-requests: write" in message and "GITHUB_TOKEN" in message
    assert "\n" not in message
    assert len(forge_emulator.requests("POST", "/comments")) == 1  # not retried


def test_bad_token_gives_401_message(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    s.env["GITHUB_TOKEN"] = scenarios.fake_token("ghp_")
    with pytest.raises(ForgeAuthError, match="rejected the token from GITHUB_TOKEN"):
        _publish(s, scenarios.bundle(tmp_path / "b", images=0))


def test_check_run_conclusion_follows_the_run_status(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    ok = _publish(s, scenarios.bundle(tmp_path / "ok", images=0), check=True)
    _publish(s, scenarios.bundle(tmp_path / "bad", images=0, status="failed"), check=True,
             marker="second")  # fmt: skip
    runs = s.repo.check_runs
    assert [r["conclusion"] for r in runs] == ["success", "failure"]
    assert all(r["head_sha"] == s.pull.head_sha for r in runs)
    assert "Training report" in runs[0]["output"]["title"]
    assert "Accuracy went up." in runs[0]["output"]["summary"]
    assert ok.status_url


def test_personal_tokens_get_a_commit_status_instead_of_a_check_run(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path, app=False)
    _publish(s, scenarios.bundle(tmp_path / "bad", images=0, status="failed"), check=True)
    assert s.repo.check_runs == []
    assert [(x["state"], x["context"]) for x in s.repo.statuses] == [("failure", "cml-nb/train")]


def test_auto_without_a_pr_comments_on_the_commit(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path, pull=False)
    result = _publish(s, scenarios.bundle(tmp_path / "b", images=0))
    assert result.target.kind == "commit"
    assert [c.body for c in s.repo.commit_comments[s.repo.head_sha()]] == [result.body]
    again = _publish(s, scenarios.bundle(tmp_path / "b", images=0))
    assert again.action == "updated" and len(s.repo.commit_comments[s.repo.head_sha()]) == 1


def test_auto_outside_a_pr_event_finds_the_open_pr_containing_the_commit(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    env = {k: v for k, v in s.env.items() if k != "GITHUB_EVENT_PATH"}
    env["GITHUB_SHA"] = s.pull.head_sha  # a push run on the PR branch
    result = publish(scenarios.bundle(tmp_path / "b", images=0), env=env, cwd=tmp_path)
    assert result.target.kind == "pr" and result.target.number == s.pull.number


def test_explicit_targets(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    issue = s.emulator.state.add_issue(s.repo)
    folder = scenarios.bundle(tmp_path / "b", images=0)
    assert _publish(s, folder, target=f"issue/{issue.number}").target.kind == "issue"
    assert len(issue.comments) == 1
    assert _publish(s, folder, target=f"commit/{s.repo.head_sha()}").target.kind == "commit"
    with pytest.raises(TargetNotFoundError):
        _publish(s, folder, target="pr/99")


def test_new_posts_another_comment_and_markers_keep_notebooks_apart(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    _publish(s, scenarios.bundle(tmp_path / "a", images=0))
    _publish(s, scenarios.bundle(tmp_path / "b", images=0, notebook="eval.ipynb"))
    _publish(s, scenarios.bundle(tmp_path / "c", images=0), new=True)
    assert len(s.pull.comments) == 3
    _publish(s, scenarios.bundle(tmp_path / "d", images=0, text="newest"))
    bodies = [c.body for c in s.pull.comments]
    assert sum("newest" in b for b in bodies) == 1 and "newest" in bodies[2]  # the newest train


def test_finds_the_marker_beyond_the_first_page(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    _publish(s, scenarios.bundle(tmp_path / "a", images=0))
    other = s.emulator.state.account("someone")
    from forge_emulator.state import Comment

    for _ in range(130):
        s.pull.comments.append(Comment(s.emulator.state.next_id(), "LGTM", other))
    # Someone else quoting the marker is not ours to edit.
    s.pull.comments.append(Comment(s.emulator.state.next_id(), s.pull.comments[0].body, other))
    result = _publish(s, scenarios.bundle(tmp_path / "b", images=0, text="second"))
    assert result.action == "updated"
    assert "second" in s.pull.comments[0].body
    assert "second" not in s.pull.comments[-1].body


def test_dry_run_touches_nothing(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    result = _publish(s, scenarios.bundle(tmp_path / "b", images=1), dry_run=True)
    assert result.action == "dry-run" and "would create" in result.notes[0]
    assert sticky.has_marker(result.body, "train") and "assets/" in result.body
    writes = [e for e in forge_emulator.exchanges if e.method != "GET"]
    assert writes == []


def test_dry_run_without_a_token_asks_nothing(forge_emulator, tmp_path):
    s = scenarios.github(forge_emulator, tmp_path)
    del s.env["GITHUB_TOKEN"]
    result = _publish(s, scenarios.bundle(tmp_path / "b", images=0), dry_run=True)
    assert result.target.number == s.pull.number
    assert forge_emulator.exchanges == []


def test_report_metrics_reads_the_hidden_metrics_for_history(forge_emulator, tmp_path):
    from cml_nb.forge import get_forge

    s = scenarios.github(forge_emulator, tmp_path)
    _publish(s, scenarios.bundle(tmp_path / "b", images=0, metrics={"accuracy": 0.5}))
    forge = get_forge("github", "octo/demo", token=s.token, api_url=forge_emulator.github_api)
    payload = report_metrics(forge, s.pull.head_sha).payload
    assert payload is not None and payload["metrics"] == {"accuracy": 0.5}
    assert report_metrics(forge, s.repo.head_sha()).payload is None
    assert forge.read_file("README.md", "main") == b"# test\n"
    assert forge.read_file("missing.txt", "main") is None


def test_429_is_retried_after_its_retry_after(forge_emulator, tmp_path):
    # Without Retry-After GitHub asks for a wait of at least a minute, tested in
    # test_github_forge_reality.py with the wait bounded; here the forge names one second.
    s = scenarios.github(forge_emulator, tmp_path)
    forge_emulator.faults.too_many_requests("POST", r"/issues/\d+/comments$")
    assert _publish(s, scenarios.bundle(tmp_path / "b", images=0)).action == "created"
    assert len(s.pull.comments) == 1


def test_a_forge_that_keeps_failing_gives_up_in_bounded_time(forge_emulator, tmp_path):
    import time

    from cml_nb.errors import ForgeError

    s = scenarios.github(forge_emulator, tmp_path)
    forge_emulator.faults.bad_gateway("GET", r"/pulls/\d+$", times=100)
    started = time.monotonic()
    with pytest.raises(ForgeError, match="kept failing") as caught:
        _publish(s, scenarios.bundle(tmp_path / "b", images=0))
    assert time.monotonic() - started < 40
    assert len(forge_emulator.requests("GET", "/pulls/")) == 6  # one try and five retries
    assert "\n" not in str(caught.value)


def test_comment_renders_with_hidden_marker_and_metrics_and_hosted_images(forge_emulator, tmp_path):
    import re

    import cmarkgfm
    from cmarkgfm.cmark import Options

    s = scenarios.github(forge_emulator, tmp_path)
    # A value that tries to close the hidden HTML comment early.
    folder = scenarios.bundle(tmp_path / "b", images=1, metrics={"note": "a --> b", "acc": 0.9})
    result = _publish(s, folder)
    html = cmarkgfm.github_flavored_markdown_to_html(result.body, options=Options.CMARK_OPT_UNSAFE)
    visible = re.sub(r"<!--.*?-->", "", html, flags=re.DOTALL)
    assert "cml-nb:report" not in visible and "cml-nb:metrics" not in visible
    assert '"acc"' not in visible
    (src,) = re.findall(r'<img src="([^"]+)"', html)
    assert src == next(iter(known_urls([type("C", (), {"body": result.body})()]).values()))
    assert sticky.parse_metrics(result.body)["metrics"] == {"note": "a --> b", "acc": 0.9}
