"""Search sweeps (method: tpe|random|cmaes|grid) end to end with real kernels and real Optuna."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import nbformat
import optuna  # the dev extra installs it: a missing install fails here, it never skips
import pytest
from click.testing import CliRunner, Result
from nbformat.v4 import new_code_cell, new_notebook

from cml_nb.cli import main
from cml_nb.report.bundle import load_bundle
from cml_nb.report.model import ImageBlock, TableBlock
from cml_nb.sweep.result import SweepResult

pytestmark = pytest.mark.timeout(240)

# The optimum is x = 0.3, y = 2 (loss 0). Each execution appends "x,y" to `counter`.
QUADRATIC = """\
import time, cml_nb
loss = (x - 0.3) ** 2 + (y - 2) ** 2
time.sleep(pause)
if counter:
    with open(counter, "a") as handle:
        handle.write(f"{x!r},{y!r}\\n")
cml_nb.log_metric("loss", loss)
"""
# Logs val_loss at every step, sleeping between steps; a high x is hopeless from step 0.
STEPPED = """\
import time, cml_nb
for step in range(8):
    with open(steps_file, "a") as handle:
        handle.write(f"{x},{step}\\n")
    cml_nb.log_metric("val_loss", x * 10 + 1.0 / (step + 1), step=step)
    time.sleep(0.4)
"""


PRUNED_SEARCH = """\
method: tpe
trials: 3
seed: 0
metric: val_loss
goal: min
pruner: {type: median, n_startup_trials: 2, n_warmup_steps: 1}
parameters:
  x: {type: float, low: 0.0, high: 1.0}
enqueue:                 # two good trials first, then the hopeless one
  - {x: 0.0}
  - {x: 0.01}
  - {x: 0.9}
"""


def notebook(path: Path, parameters: str, body: str) -> Path:
    nb = new_notebook()
    nb.cells = [new_code_cell(parameters, metadata={"tags": ["parameters"]}), new_code_cell(body)]
    nb.cells.append(
        new_code_cell("with open(done_file or '/dev/null', 'a') as f:\n    f.write('x')")
    )
    nb.cells[0].source += "\ndone_file = ''"
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def quadratic(tmp_path: Path) -> Path:
    return notebook(
        tmp_path / "quad.ipynb",
        "x = 0.0\ny = 0.0\npause = 0.0\ncounter = ''\napi_token = ''",
        QUADRATIC,
    )


def sweep(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["sweep", *map(str, args)], catch_exceptions=False)


def sweep_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def journal(out: Path) -> object:
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(out / "study.journal")))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


TPE_TRIALS = 16
TPE_DISTANCE = 0.25


def test_a_seeded_tpe_search_gets_near_a_known_optimum(tmp_path: Path) -> None:
    nb = quadratic(tmp_path)
    spec = sweep_file(tmp_path / "search.yaml", f"""\
method: {{type: tpe, n_startup_trials: 5}}
trials: {TPE_TRIALS}
seed: 1
metric: loss
goal: min
parameters:
  x: {{type: float, low: 0.0, high: 1.0}}
  y: {{type: float, low: 0.0, high: 4.0}}
""")  # fmt: skip
    out, counter = tmp_path / "out", tmp_path / "counter.txt"
    # -j 1: TPE proposes from every earlier result, so the seeded search is reproducible.
    done = sweep(nb, "-f", spec, "-j", "1", "-o", out, "--no-cache", "-p", "counter", counter)
    assert done.exit_code == 0, done.output
    result = SweepResult.read(out)
    assert len(result.runs) == TPE_TRIALS == len(lines(counter))
    best = result.search["best"]["parameters"]
    distance = math.hypot(best["x"] - 0.3, best["y"] - 2)
    assert distance < TPE_DISTANCE, (distance, best)
    assert result.best() is not None and result.best().metrics["loss"] < TPE_DISTANCE**2  # type: ignore[union-attr]
    # The report: the best trial's parameters, importances, the history and slice plots.
    report = load_bundle(out / "report")
    tables = {b.caption.split(":")[0]: b for b in report.blocks if isinstance(b, TableBlock)}
    assert [row[0] for row in tables["Best trial"].rows] == ["x", "y"]
    importance = next(t for c, t in tables.items() if c.startswith("Parameter importances"))
    assert {row[0] for row in importance.rows} == {"x", "y"}
    alts = [b.alt for b in report.blocks if isinstance(b, ImageBlock)]
    assert "optimisation history" in alts and "loss by parameter" in alts
    assert "0 pruned" in (out / "report" / "report.md").read_text()
    assert (out / "study.journal").is_file()


def test_raising_trials_continues_the_same_study_and_the_cache_answers_repeats(
    tmp_path: Path,
) -> None:
    nb = quadratic(tmp_path)
    text = """\
method: random
trials: {trials}
seed: 3
metric: loss
goal: min
parameters:
  x: {{type: categorical, choices: [0.1, 0.3]}}
  y: 2.0
"""
    spec = sweep_file(tmp_path / "s.yaml", text.format(trials=3))
    out, counter, cache = tmp_path / "out", tmp_path / "counter.txt", tmp_path / "cache"
    fake = "ghp_" + os.urandom(18).hex()  # a fixed secret-looking parameter
    first = sweep(nb, "-f", spec, "-j", "1", "-o", out, "--cache-dir", cache, "-p", "counter",
                  counter, "-p", "api_token", fake)  # fmt: skip
    assert first.exit_code == 0, first.output
    # Two choices, three trials: a repeated configuration is told its cached value.
    assert sorted(set(lines(counter))) == sorted(lines(counter))
    assert len(SweepResult.read(out).runs) == 3
    sweep_file(spec, text.format(trials=6))
    more = sweep(nb, "-f", spec, "-j", "1", "-o", out, "--cache-dir", cache, "-p", "counter",
                 counter, "-p", "api_token", fake)  # fmt: skip
    assert more.exit_code == 0, more.output
    result = SweepResult.read(out)
    assert [r.index for r in result.runs] == list(range(6))  # one study, trials 0-5
    # Each configuration ran once; every other trial was answered from the cache.
    ran = lines(counter)
    assert len(ran) == len(set(ran)) == len({r.parameters["x"] for r in result.runs}) == 2
    assert all(r.succeeded for r in result.runs)
    assert result.search["best"]["parameters"]["x"] == 0.3
    # The token reaches the kernel, never the study journal, sweep.json, runs or report.
    written = [p for p in [*out.rglob("*"), *cache.rglob("*")] if p.is_file()]
    assert out / "study.journal" in written and len(written) > 20
    assert not [p for p in written if fake.encode() in p.read_bytes()]
    assert fake not in first.output + more.output


def test_a_median_pruner_stops_a_hopeless_trial_mid_notebook(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "stepped.ipynb", "x = 0.0\nsteps_file = ''", STEPPED)
    spec = sweep_file(tmp_path / "s.yaml", PRUNED_SEARCH)
    out, steps, done_file = tmp_path / "out", tmp_path / "steps.txt", tmp_path / "done.txt"
    junit = tmp_path / "junit.xml"
    args = ["sweep", str(nb), "-f", str(spec), "-j", "1", "-o", str(out), "--no-cache",
            "-p", "steps_file", str(steps), "-p", "done_file", str(done_file), "--junit", str(junit)]  # fmt: skip
    done = CliRunner().invoke(main, args, env={"GITHUB_ACTIONS": "true"}, catch_exceptions=False)
    assert done.exit_code == 0, done.output  # a pruned trial is no failure
    assert "::error" not in done.output  # nor a CI annotation or a JUnit failure
    suites = ET.parse(junit).getroot()
    assert suites.get("failures") in (None, "0") and all(
        s.get("failures") == "0" for s in suites.iter("testsuite")
    )
    assert [k.get("message") for k in suites.iter("skipped")] == [
        "pruned at step 1: the pruner stopped this trial"
    ]
    assert "2 succeeded, 0 failed, 1 pruned" in done.output
    result = SweepResult.read(out)
    assert [r.status for r in result.runs] == ["succeeded", "succeeded", "pruned"]
    hopeless = result.runs[2]
    assert hopeless.message.startswith("pruned at step 1")
    # Later steps and the cell after the loop never ran; the partial notebook is kept.
    assert [s for s in lines(steps) if s.startswith("0.9,")] == ["0.9,0", "0.9,1"]
    assert len(done_file.read_text()) == 2
    partial = nbformat.read(out / "runs" / hopeless.name / "stepped.ipynb", as_version=4)
    texts = json.dumps([c.get("outputs", []) for c in partial.cells])
    assert "step 1" in texts and "step 2" not in texts
    assert result.search["pruned"] == 1
    study = optuna.load_study(study_name=result.space_id, storage=journal(out))
    assert study.trials[2].state == optuna.trial.TrialState.PRUNED
    assert study.trials[0].intermediate_values[7] == pytest.approx(1 / 8)
    report = (out / "report" / "report.md").read_text()
    assert "**1 pruned**" in report and "| pruned |" in report


def test_an_interrupted_search_resumes_without_repeating_finished_trials(tmp_path: Path) -> None:
    nb = quadratic(tmp_path)
    spec = sweep_file(tmp_path / "s.yaml", """\
method: tpe
trials: 5
seed: 2
metric: loss
goal: min
parameters:
  x: {type: float, low: 0.0, high: 1.0}
  y: {type: float, low: 0.0, high: 4.0}
""")  # fmt: skip
    out, counter = tmp_path / "out", tmp_path / "counter.txt"
    cli = shutil.which("cml-nb", path=str(Path(sys.executable).parent))
    assert cli is not None
    args = [cli, "sweep", str(nb), "-f", str(spec), "-j", "1", "-o", str(out), "--no-report",
            "--cache-dir", str(tmp_path / "cache"), "-p", "counter", str(counter),
            "-p", "pause", "1.5"]  # fmt: skip
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(list(out.glob("runs/*/run.json"))) >= 2 and len(lines(counter)) >= 2:
            break
        time.sleep(0.2)
    time.sleep(0.8)  # the third trial is asleep in its kernel
    os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    before = lines(counter)
    assert len(before) == 2
    # sweep.json is written on the way out, the trial in flight as not run.
    assert [r.status for r in SweepResult.read(out).runs] == ["succeeded", "succeeded", "not_run"]

    resumed = sweep(*args[2:])  # the same command again
    assert resumed.exit_code == 0, resumed.output
    after = lines(counter)
    assert after[:2] == before and len(after) == 5 == len(set(after))  # none ran twice
    result = SweepResult.read(out)
    assert len(result.runs) == 5 and all(r.succeeded for r in result.runs)
    # The trial cut short is failed in the study and its parameters asked again first.
    assert [r.index for r in result.runs] == [0, 1, 3, 4, 5]
    study = optuna.load_study(study_name=result.space_id, storage=journal(out))
    cut = study.trials[2]
    assert cut.state == optuna.trial.TrialState.FAIL and cut.user_attrs["cml_nb_interrupted"]
    assert study.trials[3].params == cut.params


def test_a_pruned_search_runs_on_a_dask_local_cluster(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "stepped.ipynb", "x = 0.0\nsteps_file = ''", STEPPED)
    spec = sweep_file(tmp_path / "s.yaml", PRUNED_SEARCH)
    out, steps = tmp_path / "out", tmp_path / "steps.txt"
    # One worker process: light, and the enqueued order is the order trials finish.
    done = sweep(nb, "-f", spec, "--executor", "dask", "-j", "1", "-o", out, "--no-cache",
                 "-p", "steps_file", steps, "--no-report")  # fmt: skip
    assert done.exit_code == 0, done.output
    result = SweepResult.read(out)
    assert [r.status for r in result.runs] == ["succeeded", "succeeded", "pruned"]
    assert [s for s in lines(steps) if s.startswith("0.9,")] == ["0.9,0", "0.9,1"]
    for run in result.runs:  # files came back from the worker
        assert (out / "runs" / run.name / "stepped.ipynb").is_file()


GOOD = """\
method: tpe
trials: 4
metric: loss
parameters:
  x: {type: float, low: 0.0, high: 1.0}
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + "budget: 3\n", "unknown keys budget (a search file takes method, trials"),
        (GOOD.replace("low: 0.0, high: 1.0", "low: 1.0, high: 0.0"),
         "parameter 'x': low (1) must be below high (0)"),
        (GOOD.replace("high: 1.0}", "high: 1.0, log: true}"), "a log range needs low > 0"),
        (GOOD.replace("type: float", "type: double"), "type must be float, int or categorical"),
        (GOOD.replace("high: 1.0}", "high: 1.0, stpe: 2}"), "unknown keys stpe (a float takes"),
        (GOOD.replace("method: tpe", "method: bayes"), "method: 'bayes' is not one of tpe, random"),
        (GOOD + "pruner: {type: median, patience: 2}\n",
         "pruner: median takes no option patience (it takes n_startup_trials"),
        (GOOD.replace("trials: 4", "trials: 0"), "trials: must be an integer from 1"),
        (GOOD.replace("trials: 4\n", ""), "trials: is missing"),
        (GOOD.replace("metric: loss\n", ""), "a search needs the metric to optimise"),
        (GOOD.replace("x: {", "z: {"), "unknown parameter"),
        ("method: tpe\ntrials: 2\ngrid: {x: [1, 2]}\n", "method 'tpe' searches typed parameters"),
    ],
)  # fmt: skip
def test_bad_search_files_fail_in_one_line_before_any_run(
    tmp_path: Path, text: str, message: str
) -> None:
    nb = quadratic(tmp_path)
    spec = sweep_file(tmp_path / "s.yaml", text)
    out = tmp_path / "out"
    done = sweep(nb, "-f", spec, "-o", out, "--no-cache")
    assert done.exit_code == 2, done.output
    assert message in done.output, done.output
    assert len(done.output.strip().splitlines()) == 1, done.output
    assert "Traceback" not in done.output
    assert not (out / "runs").exists()


def test_method_grid_or_random_over_todays_sections_keeps_their_meaning(tmp_path: Path) -> None:
    from cml_nb.sweep.search import read_sweep_file
    from cml_nb.sweep.space import load_file

    old = "grid: {a: [1, 2]}\nrandom: {n: 3, seed: 4, parameters: {b: {uniform: [0, 1]}}}\n"
    plain = sweep_file(tmp_path / "plain.yaml", old)
    for method in ("grid", "random"):
        named = sweep_file(tmp_path / f"{method}.yaml", f"method: {method}\n{old}")
        space = read_sweep_file(named)
        assert not hasattr(space, "trials")
        assert space.configurations() == load_file(plain).configurations()  # type: ignore[union-attr]


def test_shard_and_g_do_not_combine_with_a_search(tmp_path: Path) -> None:
    nb = quadratic(tmp_path)
    spec = sweep_file(tmp_path / "s.yaml", GOOD)
    for extra in (["--shard", "1/2"], ["-g", "y=1,2"]):
        done = sweep(nb, "-f", spec, "-o", tmp_path / "out", *extra)
        assert done.exit_code == 2 and "does not apply to a search" in done.output, done.output


def test_a_search_without_optuna_names_the_extra(tmp_path: Path) -> None:
    nb = quadratic(tmp_path)
    spec = sweep_file(tmp_path / "s.yaml", GOOD)
    # A real interpreter where `import optuna` fails, as without the [search] extra.
    code = (
        "import sys; sys.modules['optuna'] = None\n"
        "from cml_nb.cli import main\n"
        f"main(['sweep', {str(nb)!r}, '-f', {str(spec)!r}, '-o', {str(tmp_path / 'o')!r}])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "pip install 'cml-nb[search]'" in done.stderr and "Traceback" not in done.stderr


def test_hyperband_prunes_with_the_rungs_of_earlier_trials(tmp_path: Path) -> None:
    # Successive halving compares a trial with earlier ones at each rung: the values it
    # keeps per rung must reach the worker's snapshot, or hyperband never prunes.
    body = STEPPED.replace("range(8)", "range(9)").replace("0.4", "0.1")
    nb = notebook(tmp_path / "stepped.ipynb", "x = 0.0\nsteps_file = ''", body)
    good, bad = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05], [0.9, 0.91, 0.92]
    spec = sweep_file(tmp_path / "s.yaml", f"""\
method: tpe
trials: 9
metric: val_loss
goal: min
pruner: {{type: hyperband, min_resource: 1, reduction_factor: 3}}
parameters:
  x: {{type: float, low: 0.0, high: 1.0}}
enqueue: {json.dumps([{"x": x} for x in good + bad])}
""")  # fmt: skip
    out, steps = tmp_path / "out", tmp_path / "steps.txt"
    done = sweep(nb, "-f", spec, "-j", "1", "-o", out, "--no-cache", "--no-report",
                 "-p", "steps_file", steps)  # fmt: skip
    assert done.exit_code == 0, done.output
    status = {r.parameters["x"]: r.status for r in SweepResult.read(out).runs}
    assert status[0.0] == "succeeded"
    assert "pruned" in {status[x] for x in bad}, status


@pytest.mark.parametrize(
    "journal_text",
    ['{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}\n{torn\n{}\n',
     '[1, 2]\n', '{"op_code": 99}\n'],
)  # fmt: skip
def test_an_unreadable_study_journal_is_one_line(tmp_path: Path, journal_text: str) -> None:
    nb = quadratic(tmp_path)
    spec = sweep_file(tmp_path / "s.yaml", GOOD)
    out = tmp_path / "out"
    out.mkdir()
    (out / "study.journal").write_text(journal_text)
    done = sweep(nb, "-f", spec, "-o", out, "--no-cache")
    assert done.exit_code == 2, done.output
    assert "study journal" in done.output and "move it away" in done.output
    assert len(done.output.strip().splitlines()) == 1 and "Traceback" not in done.output


def test_the_search_example_in_the_docs_is_a_valid_search_file() -> None:
    import re

    import yaml

    from cml_nb.sweep.search import parse_search

    doc = (Path(__file__).resolve().parent.parent / "docs" / "sweep.md").read_text()
    examples = [b for b in re.findall(r"```yaml\n(.*?)```", doc, flags=re.DOTALL) if "method:" in b]
    assert examples
    spec = parse_search(yaml.safe_load(examples[0]), "docs/sweep.md")
    assert (spec.method, spec.trials, spec.pruner) == ("tpe", 40, "median")
    assert spec.swept() == ["lr", "dropout", "depth", "optimizer"] and spec.fixed == {"epochs": 3}


TIMED = """\
import time, cml_nb
start = time.time()
time.sleep(pause)
with open(counter, "a") as handle:
    handle.write(f"{x},{y},{start},{time.time()}\\n")
cml_nb.log_metric("loss", (x - 0.3) ** 2 + (y - 2) ** 2)
"""


def test_grid_over_typed_parameters_runs_trials_in_parallel_with_j(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "timed.ipynb", "x = 0.0\ny = 0\npause = 0.0\ncounter = ''", TIMED)
    spec = sweep_file(tmp_path / "s.yaml", """\
method: grid             # trials: every combination (4)
metric: loss
goal: min
parameters:
  x: {type: categorical, choices: [0.1, 0.3]}
  y: {type: int, low: 1, high: 2}
""")  # fmt: skip
    out, counter = tmp_path / "out", tmp_path / "counter.txt"
    done = sweep(nb, "-f", spec, "-j", "2", "-o", out, "--no-cache", "--no-report",
                 "-p", "counter", counter, "-p", "pause", "1.5")  # fmt: skip
    assert done.exit_code == 0, done.output
    rows = [line.split(",") for line in lines(counter)]
    assert sorted((r[0], r[1]) for r in rows) == [("0.1", "1"), ("0.1", "2"), ("0.3", "1"),
                                                  ("0.3", "2")]  # fmt: skip
    spans = sorted((float(r[2]), float(r[3])) for r in rows)
    # Two trials in flight: some trial starts before the one before it has ended.
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))
    assert SweepResult.read(out).best().parameters == {  # type: ignore[union-attr]
        "x": 0.3, "y": 2, "pause": 1.5, "counter": str(counter),
    }  # fmt: skip


@pytest.mark.parametrize("method", ["tpe", "random", "cmaes", "grid"])
@pytest.mark.parametrize("pruner", ["median", "hyperband", "percentile", "none"])
def test_every_registered_method_and_pruner_builds(method: str, pruner: str) -> None:
    from cml_nb.sweep.search import PRUNERS, SAMPLERS, parse_search

    assert method in SAMPLERS and pruner in PRUNERS
    options = {"percentile": {"type": "percentile", "percentile": 25.0}}.get(pruner, pruner)
    data = {
        "method": method, "trials": 3, "metric": "loss", "pruner": options,
        "parameters": {"x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.5},
                       "n": {"type": "int", "low": 1, "high": 3}},
    }  # fmt: skip
    spec = parse_search(data, "s.yaml")
    sampler, built = spec.sampler(optuna), spec.make_pruner(optuna)
    study = optuna.create_study(sampler=sampler, pruner=built)
    trial = study.ask(spec.distributions(optuna))
    assert 0.0 <= trial.params["x"] <= 1.0 and trial.params["n"] in (1, 2, 3)
