"""Metrics and series from the loggers notebooks already use, read after ``cml-nb run``.

Each notebook is real and tiny, executed once per session by ``cml-nb run`` on a real
kernel: tensorboardX writes TensorBoard event files, DVCLive its folder, MLflow a local
sqlite store. The tests assert what a user reads: run.json, metrics.json, the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cmarkgfm
import nbformat
import pytest
import tensorboardX  # noqa: F401  (the dev extra installs the loggers: missing ones fail, never skip)
from click.testing import CliRunner

from cml_nb.cli import main

TENSORBOARD_CELL = """
from tensorboardX import SummaryWriter
import cml_nb
writer = SummaryWriter("runs/exp")
for step in range(4):
    writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.add_scalar("train/acc", 0.5 + 0.1 * step, step)
    writer.add_scalar("val/loss", 2.0 / (step + 1), step)
writer.close()
cml_nb.log_metric("train/acc", 0.99)  # cml_nb's own value wins the clash
cml_nb.log_metric("f1", 0.7)
"""

DVCLIVE_CELL = """
from dvclive import Live
with Live(save_dvc_exp=False) as live:
    for step in range(3):
        live.log_metric("train/loss", 1.0 / (step + 1))
        live.log_metric("val/acc", 0.6 + 0.1 * step)
        live.next_step()
    live.summary["best_epoch"] = 2
"""

MLFLOW_CELL = """
import mlflow
mlflow.set_tracking_uri("sqlite:///mlflow.db")
mlflow.set_experiment("demo")
with mlflow.start_run(run_name="first"):
    for step in range(3):
        mlflow.log_metric("train/loss", 1.0 / (step + 1), step=step)
    mlflow.log_metric("val/acc", 0.8)
"""


def write_notebook(folder: Path, *sources: str, name: str = "train.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    path = folder / name
    nbformat.write(nb, path)
    return path


def run_cli(notebook: Path, *args: str) -> tuple[int, str]:
    out = notebook.parent / "out" / notebook.name
    result = CliRunner().invoke(main, ["run", str(notebook), "-o", str(out), *args])
    return result.exit_code, result.output


def outputs(notebook: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    out = notebook.parent / "out"
    record = json.loads((out / "run.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    markdown = (out / "report" / "report.md").read_text()
    return record, metrics, markdown


@pytest.fixture(scope="session")
def tensorboard_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("tb")
    stale = folder / "runs" / "old"
    stale.mkdir(parents=True)
    # An earlier run's event file: written before this run, so it must not count.
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(stale))
    writer.add_scalar("stale/metric", 5.0, 0)
    writer.close()
    for path in stale.iterdir():
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    notebook = write_notebook(folder, TENSORBOARD_CELL)
    code, output = run_cli(notebook)
    assert code == 0, output
    return notebook, output


def test_tensorboard_last_values_in_metrics_json(tensorboard_run: tuple[Path, str]) -> None:
    record, metrics, _ = outputs(tensorboard_run[0])
    assert metrics["train/loss"] == pytest.approx(0.25)
    assert metrics["val/loss"] == pytest.approx(0.5)
    assert metrics["train/acc"] == 0.99  # log_metric wins over the event file's 0.8
    assert "stale/metric" not in metrics and "stale/metric" not in record["series"]
    assert record["metric_sources"] == {
        "train/loss": "tensorboard",
        "val/loss": "tensorboard",
        "train/acc": "cml_nb",
        "f1": "cml_nb",
    }


def test_tensorboard_full_series_in_run_json(tensorboard_run: tuple[Path, str]) -> None:
    record, _, _ = outputs(tensorboard_run[0])
    loss = record["series"]["train/loss"]
    assert [p["step"] for p in loss] == [0, 1, 2, 3]
    assert [p["value"] for p in loss] == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
    assert all(p["wall_time"] >= time.time() - 3000 for p in loss)
    assert record["series"]["train/acc"][-1]["value"] == pytest.approx(0.8)  # its own series
    assert record["loggers"]["read"] == ["tensorboard"]


def test_tensorboard_curves_in_the_report(tensorboard_run: tuple[Path, str]) -> None:
    notebook = tensorboard_run[0]
    report = json.loads((notebook.parent / "out" / "report" / "report.json").read_text())
    _, _, markdown = outputs(notebook)
    html = cmarkgfm.github_flavored_markdown_to_html(markdown)
    curves = [b for b in report["blocks"] if b["type"] == "image" and "curves" in b["alt"]]
    assert sorted(b["alt"] for b in curves) == ["train/ curves", "val/ curves"]
    for block in curves:
        asset = notebook.parent / "out" / "report" / "assets" / block["asset"]
        assert asset.read_bytes().startswith(b"\x89PNG")
        assert f'src="assets/{block["asset"]}"' in html
    # The metrics table says where each value came from.
    assert "| train/loss | 0.25 | tensorboard |" in markdown
    assert "| train/acc | 0.99 | cml_nb |" in markdown


def test_loggers_none_reads_nothing(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    notebook = write_notebook(tmp_path, TENSORBOARD_CELL)
    code, output = run_cli(notebook, "--loggers", "none", "--no-report")
    assert code == 0, output
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["series"] == {} and set(record["metrics"]) == {"train/acc", "f1"}


def test_tensorboard_dir_option_and_unknown_logger(tmp_path: Path) -> None:
    cell = TENSORBOARD_CELL.replace('"runs/exp"', '"board/exp"')
    # val/loss as a scalar tensor, the way TF2/Keras writers store scalars (no simple_value).
    tensor = (
        "from tensorboardX.proto.summary_pb2 import Summary\n"
        "from tensorboardX.proto.tensor_pb2 import TensorProto\n"
        "def add_tensor_scalar(tag, value, step):\n"
        "    proto = TensorProto(dtype=1, float_val=[value])  # DT_FLOAT, shape []\n"
        "    summary = Summary(value=[Summary.Value(tag=tag, tensor=proto)])\n"
        "    writer._get_file_writer().add_summary(summary, step)\n"
    )
    cell = cell.replace("writer = SummaryWriter", tensor + "writer = SummaryWriter")
    cell = cell.replace('writer.add_scalar("val/loss"', 'add_tensor_scalar("val/loss"')
    notebook = write_notebook(tmp_path, cell)
    code, output = run_cli(notebook, "--loggers", "tensorboard", "--tensorboard", "board",
                           "--no-report")  # fmt: skip
    assert code == 0, output
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["val/loss"] == 0.5
    code, output = run_cli(notebook, "--loggers", "tensorbored")
    assert code == 2
    assert "unknown logger 'tensorbored': use tensorboard, dvclive, mlflow" in output
    assert "Traceback" not in output


def test_missing_reader_package_is_one_hint(tmp_path: Path) -> None:
    """Without the tensorboard package, found event files are skipped with a hint."""
    notebook = write_notebook(tmp_path, TENSORBOARD_CELL)
    # The parent process hides tensorboard; the kernel (a child) still has tensorboardX.
    code = (
        "import sys; sys.modules['tensorboard'] = None\n"
        "from cml_nb.cli import main\n"
        f"main(['run', {str(notebook)!r}, '-o', {str(tmp_path / 'out' / 'train.ipynb')!r},"
        " '--no-report'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=240, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    hints = [line for line in done.stderr.splitlines() if "skipped" in line]
    assert len(hints) == 1
    assert "pip install 'cml-nb[tensorboard]'" in hints[0] and "Traceback" not in done.stderr
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["series"] == {} and record["metrics"] == {"train/acc": 0.99, "f1": 0.7}


@pytest.fixture(scope="session")
def dvclive_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dvclive")
    notebook = write_notebook(folder, DVCLIVE_CELL)
    code, output = run_cli(notebook)
    assert code == 0, output
    return notebook


def test_dvclive_series_and_summary(dvclive_run: Path) -> None:
    record, metrics, markdown = outputs(dvclive_run)
    assert [p["value"] for p in record["series"]["train/loss"]] == pytest.approx([1, 0.5, 1 / 3])
    assert [p["step"] for p in record["series"]["val/acc"]] == [0, 1, 2]
    assert metrics["val/acc"] == pytest.approx(0.8)
    assert metrics["best_epoch"] == 2  # from DVCLive's metrics.json, no series
    assert record["metric_sources"]["train/loss"] == "dvclive"
    assert "| val/acc | 0.8 | dvclive |" in markdown


@pytest.fixture(scope="session")
def mlflow_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mlflow")
    notebook = write_notebook(folder, MLFLOW_CELL)
    code, output = run_cli(notebook, "--loggers", "mlflow")
    assert code == 0, output
    return notebook


def test_mlflow_metric_history(mlflow_run: Path) -> None:
    record, metrics, markdown = outputs(mlflow_run)
    assert [p["step"] for p in record["series"]["train/loss"]] == [0, 1, 2]
    assert metrics == {"train/loss": pytest.approx(1 / 3), "val/acc": 0.8}
    assert record["metric_sources"] == {"train/loss": "mlflow", "val/acc": "mlflow"}
    assert "| val/acc | 0.8 | mlflow |" in markdown


def test_mlflow_earlier_runs_do_not_count(
    mlflow_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same store read again by a run that logs nothing: its older runs are not this run's."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{mlflow_run.parent / 'mlflow.db'}")
    notebook = write_notebook(mlflow_run.parent, "x = 1", name="other.ipynb")
    out = mlflow_run.parent / "other-out" / "other.ipynb"
    result = CliRunner().invoke(main, ["run", str(notebook), "-o", str(out), "--no-report",
                                       "--loggers", "mlflow"])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out.parent / "run.json").read_text())
    assert record["metrics"] == {} and record["series"] == {}


def test_base_curves_are_overlaid_when_comparing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main commits a run's metrics.json and run.json; the branch's report draws both runs."""
    from tests.test_history import git

    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    monkeypatch.chdir(root)
    for name in ("GITHUB_BASE_REF", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "GITHUB_TOKEN",
                 "GH_TOKEN", "GITLAB_TOKEN", "REPO_TOKEN", "CI_JOB_TOKEN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    notebook = write_notebook(root, TENSORBOARD_CELL)
    (root / ".gitignore").write_text("out/\nruns/\n")
    code, output = run_cli(notebook, "--no-report")
    assert code == 0, output
    for name in ("metrics.json", "run.json"):  # what a default-branch job commits
        (root / name).write_text((root / "out" / name).read_text())
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base run")
    git(root, "checkout", "-q", "-b", "change")
    write_notebook(root, TENSORBOARD_CELL.replace("1.0 / (step + 1)", "0.5 / (step + 1)"))
    git(root, "commit", "-q", "-am", "lower loss")

    code, output = run_cli(notebook, "--compare-to", "main", "--goal", "train/loss=min")
    assert code == 0, output
    report = json.loads((root / "out" / "report" / "report.json").read_text())
    alts = sorted(b["alt"] for b in report["blocks"] if b["type"] == "image")
    assert alts == ["train/ curves (base dashed)", "val/ curves (base dashed)"]
    assert len(report["assets"]) == 2  # the first drawing's figures were replaced
    markdown = (root / "out" / "report" / "report.md").read_text()
    assert "| train/loss | 0.125 | 0.25 | -0.125 (-50.0%) 🟢 | tensorboard |" in markdown


def test_a_tracking_server_password_never_reaches_the_record(tmp_path: Path) -> None:
    """A down server named with user:password@ is one note, without the password."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    notebook = write_notebook(tmp_path, "x = 1")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://alice:pw-Zq81xK@127.0.0.1:{port}",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "cml_nb", "run", str(notebook), "-o",
         str(tmp_path / "out" / "train.ipynb"), "--loggers", "mlflow"],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    [note] = record["loggers"]["notes"]
    assert note.startswith(f"mlflow: MLflow store http://127.0.0.1:{port} could not be read")
    written = [p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert "pw-Zq81xK" not in done.stderr + done.stdout + "".join(written)


def test_a_tag_that_looks_like_mathtext_is_drawn_as_typed() -> None:
    """Tags are notebook text: a malformed "$...$" must not fail the report's figure."""
    from cml_nb.loggers.curves import figure_png

    curves = {"bad/$\\frac{$": [[0.0, 1.0], [1.0, 0.5]]}
    assert figure_png("bad/", list(curves), curves, None).startswith(b"\x89PNG")


KERAS_LAYOUT_CELL = """
from tensorboardX import SummaryWriter
for folder, scale in (("train", 1.0), ("validation", 2.0)):
    writer = SummaryWriter(f"logs/fit/{folder}")
    for step in range(3):
        writer.add_scalar("epoch_loss", scale / (step + 1), step)
    writer.close()
"""


def test_keras_layout_names_tags_by_their_folder(tmp_path: Path) -> None:
    """Keras writes logs/.../train and logs/.../validation, each with epoch_loss."""
    notebook = write_notebook(tmp_path, KERAS_LAYOUT_CELL)
    code, output = run_cli(notebook, "--no-report")
    assert code == 0, output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics == {
        "train/epoch_loss": pytest.approx(1 / 3),
        "validation/epoch_loss": pytest.approx(2 / 3),
    }


def test_loggers_setting_in_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.cml-nb.run]\nloggers = "none"\n')
    monkeypatch.chdir(tmp_path)
    notebook = write_notebook(tmp_path, TENSORBOARD_CELL)
    code, output = run_cli(notebook, "--no-report")
    assert code == 0, output
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["series"] == {} and record["loggers"]["read"] == []


PLUGIN = """
from cml_nb.loggers import Found


class CsvReader:
    name, extra, module = "csvlog", "csvlog", "csv"

    def present(self, ctx):
        path = ctx.cwd / "log.csv"
        return "log.csv" if path.exists() and ctx.written_during_run(path) else None

    def read(self, ctx):
        rows = [line.split(",") for line in (ctx.cwd / "log.csv").read_text().split()]
        series = {"csv/loss": [(int(s), float(v), None) for s, v in rows]}
        return Found(series=series, last={"csv/loss": series["csv/loss"][-1][1]})
"""


def test_a_plugin_reader_runs_when_named(tmp_path: Path) -> None:
    """An installed package's entry point in cml_nb.loggers, used only when --loggers names it."""
    site = tmp_path / "site"
    (site / "csvlog_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "csvlog_plugin.py").write_text(PLUGIN)
    info = site / "csvlog_plugin-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: csvlog-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cml_nb.loggers]\ncsvlog = csvlog_plugin:CsvReader\n")
    folder = tmp_path / "work"
    folder.mkdir()
    notebook = write_notebook(folder, "open('log.csv', 'w').write('0,1.0\\n1,0.4\\n')")
    env = {**os.environ, "PYTHONPATH": str(site)}

    def run(*loggers: str) -> dict[str, Any]:
        out = folder / "out" / "train.ipynb"
        done = subprocess.run([sys.executable, "-m", "cml_nb", "run", str(notebook), "-o",
                               str(out), "--no-report", *loggers],
                              capture_output=True, text=True, timeout=240, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return dict(json.loads((out.parent / "run.json").read_text()))

    assert run()["metrics"] == {}  # the default reads the built-ins only
    record = run("--loggers", "tensorboard,csvlog")
    assert record["metrics"] == {"csv/loss": 0.4}
    assert record["metric_sources"] == {"csv/loss": "csvlog"}
    assert [p["step"] for p in record["series"]["csv/loss"]] == [0, 1]
