"""Base metrics from a real git repository and run records; deltas, directions, trends."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from cml_nb import history
from cml_nb.errors import ConfigError
from cml_nb.records import RunRecord

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, timeout=30, check=True,
        env={**os.environ, **GIT_ENV},
    )  # fmt: skip
    return done.stdout.strip()


def commit_metrics(
    repo: Path, metrics: dict[str, object], message: str, path: str = "metrics.json"
) -> str:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(metrics))
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """main: three commits of metrics.json; branch feature checked out, one commit ahead."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("test\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "start")
    for accuracy, loss in [(0.80, 0.50), (0.85, 0.40), (0.90, 0.30)]:
        commit_metrics(root, {"accuracy": accuracy, "loss": loss}, f"train acc {accuracy}")
    git(root, "checkout", "-q", "-b", "feature")
    (root / "model.py").write_text("# a change\n")
    git(root, "add", "model.py")
    git(root, "commit", "-q", "-m", "try a new model")
    return root


def test_git_base_gives_deltas_and_directions(repo: Path) -> None:
    base = history.find_baseline("main", cwd=repo)
    assert base.found and base.source == "git"
    assert base.metrics == {"accuracy": 0.90, "loss": 0.30}
    assert base.commit == git(repo, "rev-parse", "main")
    assert "metrics.json at main" in base.summary()

    deltas = {d.name: d for d in history.compare_metrics(
        {"accuracy": 0.93, "loss": 0.35, "f1": 0.7}, base.metrics, {"loss": "min"}
    )}  # fmt: skip
    assert deltas["accuracy"].change == pytest.approx(0.03)
    assert deltas["accuracy"].verdict == "better"
    assert deltas["accuracy"].text() == "+0.03 (+3.3%) 🟢"
    # loss went up: worse, because its goal is min
    assert deltas["loss"].verdict == "worse" and deltas["loss"].text().endswith("🔴")
    assert deltas["f1"].verdict == "new" and deltas["f1"].text() == "new"


def test_higher_is_better_by_default(repo: Path) -> None:
    deltas = history.compare_metrics({"loss": 0.2, "accuracy": 0.9}, {"loss": 0.3, "accuracy": 0.9})
    assert [d.verdict for d in deltas] == ["worse", "same"]
    assert deltas[1].text() == "+0 (+0.0%)"


def test_auto_uses_the_pr_base_branch_then_the_previous_commit(repo: Path) -> None:
    in_pr = history.find_baseline("auto", cwd=repo, env={"GITHUB_BASE_REF": "main"})
    assert in_pr.ref == "main" and in_pr.metrics["accuracy"] == 0.90
    gitlab = history.find_baseline(
        "auto", cwd=repo, env={"CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"}
    )
    assert gitlab.ref == "main"
    # outside a PR: the previous commit, whose metrics.json is the same here
    push = history.find_baseline("auto", cwd=repo, env={})
    assert push.ref == "HEAD~1" and push.commit == git(repo, "rev-parse", "HEAD~1")


def test_an_older_commit_and_a_custom_path(repo: Path) -> None:
    first = git(repo, "rev-list", "--reverse", "main").splitlines()[1]
    assert history.find_baseline(first, cwd=repo).metrics["accuracy"] == 0.80
    git(repo, "checkout", "-q", "main")
    commit_metrics(
        repo, {"train": {"loss": 0.1}, "val": {"acc": 0.7}}, "dvc style", "eval/scores.json"
    )
    base = history.find_baseline("HEAD", cwd=repo, metrics_path="eval/scores.json")
    assert base.metrics == {"train.loss": 0.1, "val.acc": 0.7}
    # a relative path is read from the working directory inside the repository
    sub = history.find_baseline("HEAD", cwd=repo / "eval", metrics_path="scores.json")
    assert sub.metrics == base.metrics


def test_run_json_beside_metrics_gives_the_parameter_diff(repo: Path) -> None:
    git(repo, "checkout", "-q", "main")
    record = RunRecord("nb.ipynb", "out.ipynb", "succeeded", parameters={"lr": 0.1, "epochs": 3},
                       metrics={"accuracy": 0.91})  # fmt: skip
    record.write(repo / "runs")
    git(repo, "add", "runs")
    git(repo, "commit", "-q", "-m", "record")
    base = history.find_baseline("main", cwd=repo, metrics_path="runs/metrics.json")
    assert base.parameters == {"lr": 0.1, "epochs": 3}
    changed = history.compare_parameters({"lr": 0.05, "epochs": 3, "seed": 1}, base.parameters)
    assert changed == [("lr", 0.05, 0.1), ("seed", 1, None)]


def test_nothing_breaks_when_no_base_is_found(repo: Path, tmp_path: Path) -> None:
    base = history.find_baseline("main", cwd=repo, metrics_path="nope.json")
    assert not base.found and base.metrics == {}
    assert "no base found for main" in base.summary() and "nope.json" in base.summary()
    missing = history.find_baseline("no-such-branch", cwd=repo, history_dir=tmp_path / "empty")
    assert not missing.found and "not in this clone" in missing.summary()
    outside = history.find_baseline("main", cwd=tmp_path)  # not a git repository at all
    assert not outside.found

    comparison = history.compare(
        {"accuracy": 0.5}, ref="main", metrics_path="nope.json", cwd=repo,
        fail_on_regression=["accuracy:0.01"],
    )  # fmt: skip
    assert comparison.report["metrics"] is None
    assert comparison.report["source"].startswith("no base found")
    assert [g.status for g in comparison.gates] == ["skipped"]
    comparison.enforce()  # a skipped gate does not fail


def test_a_shallow_clone_fetches_the_base_branch(repo: Path, tmp_path: Path) -> None:
    # As in CI: a single-branch, depth-1 clone of the feature branch lacks main.
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", "--depth=1", "--single-branch", "--branch", "feature",
         repo.as_uri(), str(clone)],
        check=True, timeout=60, capture_output=True, env={**os.environ, **GIT_ENV},
    )  # fmt: skip
    assert subprocess.run(["git", "rev-parse", "--verify", "-q", "origin/main"], cwd=clone,
                          capture_output=True).returncode != 0  # fmt: skip
    base = history.find_baseline("main", cwd=clone)
    assert base.found and base.metrics["accuracy"] == 0.90
    assert base.commit == git(repo, "rev-parse", "main")


def _record(folder: Path, commit: str | None, accuracy: float, finished: str) -> None:
    record = RunRecord(
        "nb.ipynb", "out.ipynb", "succeeded", parameters={"lr": accuracy},
        metrics={"accuracy": accuracy}, finished_at=finished,
        environment={"git": {"commit": commit}} if commit else {},
    )  # fmt: skip
    record.write(folder)


def test_records_folder_matches_the_base_commit(repo: Path, tmp_path: Path) -> None:
    runs = tmp_path / "cache"
    main = git(repo, "rev-parse", "main")
    _record(runs / "a", main, 0.77, "2026-01-01T00:00:00Z")
    _record(runs / "b", "f" * 40, 0.99, "2026-02-01T00:00:00Z")
    base = history.find_baseline("main", cwd=repo, history_dir=runs, sources=["records"])
    assert base.source == "records" and base.metrics == {"accuracy": 0.77}
    assert base.parameters == {"lr": 0.77} and str(runs / "a") in base.summary()
    # the git source comes first when it has the file
    assert history.find_baseline("main", cwd=repo, history_dir=runs).source == "git"


def test_records_folder_falls_back_to_the_latest_other_run(tmp_path: Path) -> None:
    runs = tmp_path / "cache"
    _record(runs / "old", "a" * 40, 0.6, "2026-01-01T00:00:00Z")
    _record(runs / "new", "b" * 40, 0.7, "2026-02-01T00:00:00Z")
    _record(runs / "this", "c" * 40, 0.8, "2026-03-01T00:00:00Z")
    base = history.find_baseline("main", cwd=tmp_path, history_dir=runs, head_commit="c" * 40)
    assert base.metrics == {"accuracy": 0.7} and "latest record, commit bbbbbbb" in base.summary()


def test_goals_parse_and_reject() -> None:
    assert history.parse_goals(["accuracy=max,loss=min", "f1 = MAX"]) == {
        "accuracy": "max", "loss": "min", "f1": "max",
    }  # fmt: skip
    with pytest.raises(ConfigError, match="NAME=max or NAME=min"):
        history.parse_goals("loss=down")
    with pytest.raises(ConfigError, match="unknown history source"):
        history.find_baseline("main", sources=["svn"])


def test_report_baseline_carries_delta_cells(repo: Path) -> None:
    comparison = history.compare(
        {"accuracy": 0.88, "loss": 0.25}, {"lr": 0.2}, ref="main", goals="loss=min", cwd=repo,
        fail_if=["accuracy < base - 0.01"],
    )  # fmt: skip
    report = comparison.report
    assert report["metrics"] == {"accuracy": 0.90, "loss": 0.30}
    assert report["deltas"]["accuracy"].endswith("🔴") and report["deltas"]["loss"].endswith("🟢")
    assert report["verdicts"] == {"accuracy": "worse", "loss": "better"}
    assert comparison.gates[0].failed and "❌" in report["gates"][0]


def test_pair_images_by_place_not_by_hash() -> None:
    from cml_nb.report.model import DetailsBlock, ImageBlock, Report

    def report(*images: bytes) -> Report:
        r = Report("r")
        for data in images:
            r.blocks.append(ImageBlock(r.add_asset(data, "image/png").name, "output of cell 3"))
        return r

    base, head = report(b"same", b"old"), report(b"same", b"new", b"extra")
    head.blocks = [DetailsBlock("folded", head.blocks)]  # nested images count too
    assert history.pair_images(head, base) == 1
    first, second, third = head.blocks[0].blocks  # type: ignore[attr-defined]
    assert first.base is None and third.base is None  # identical, and no counterpart
    assert second.base is not None and head.assets[second.base].data == b"old"
