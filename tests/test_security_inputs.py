"""Issue 14, "Low, and bad input": hostile files and specs give one line and exit 2, a corrupt
cache entry is recomputed, and temporary files never follow a planted symlink.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from forge_emulator import scenarios

from cml_nb.cli import main
from cml_nb.errors import ConfigError
from cml_nb.report import Report, write_bundle
from cml_nb.sweep import cache as cache_mod
from cml_nb.sweep.result import SweepResult
from cml_nb.sweep.space import MAX_CONFIGURATIONS, SweepSpace, load_file
from tests.test_sweep import lines, sweep, write_notebook

NOTEBOOK = Path(__file__).parent / "notebooks" / "emits_metrics.ipynb"


def _laughs(key: str = "lr") -> str:
    # Nine aliases of nine aliases...: 9**9 (387 million) values from 300 bytes.
    text = "l0: &l0 [x, x, x, x, x, x, x, x, x]\n"
    for level in range(1, 9):
        text += f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]\n"
    return text + f"{key}: *l8\n"


HOSTILE_YAML = {
    "billion-laughs": (_laughs(), "expands to over 100,000 values"),
    "recursive-alias": ("lr: &a [1, *a]\n", "has a recursive alias"),
    "recursive-mapping": ("lr: &a {x: *a}\n", "has a recursive alias"),
    "deep-nesting": ("lr: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
}


def _one_line(output: str, expected: str) -> None:
    assert expected in output, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output


@pytest.mark.parametrize("name", list(HOSTILE_YAML))
def test_hostile_parameters_files_are_one_line(tmp_path: Path, name: str) -> None:
    text, expected = HOSTILE_YAML[name]
    path = tmp_path / "params.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, [
        "run", str(NOTEBOOK), "-f", str(path), "--allow-unknown", "-o", str(tmp_path / "o.ipynb"),
    ])  # fmt: skip
    assert result.exit_code == 2
    _one_line(result.output, expected)
    assert not (tmp_path / "o.ipynb").exists()


@pytest.mark.parametrize("name", list(HOSTILE_YAML))
def test_hostile_sweep_files_are_one_line(tmp_path: Path, name: str) -> None:
    text, expected = HOSTILE_YAML[name]
    path = tmp_path / "space.yaml"
    path.write_text("parameters:\n" + "".join(f"  {line}\n" for line in text.splitlines()))
    result = CliRunner().invoke(main, ["sweep", str(NOTEBOOK), "-f", str(path),
                                       "-o", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 2
    _one_line(result.output, expected)


@pytest.mark.parametrize(
    ("random", "expected"),
    [
        ({"n": 2, "parameters": {"lr": {"uniform": ["a", "b"]}}}, "uniform takes numbers"),
        ({"n": 2, "parameters": {"lr": {"loguniform": ["a", 1]}}}, "loguniform takes numbers"),
        ({"n": 2, "parameters": {"lr": {"randint": [5, 1]}}}, "randint takes two integers"),
        ({"n": 2, "parameters": {"lr": {"randint": [1.5, 3]}}}, "randint takes two integers"),
        ({"n": 2, "parameters": {"lr": {"normal": [0, [1]]}}}, "normal takes numbers"),
        ({"n": 2, "seed": [1], "parameters": {"lr": {"uniform": [0, 1]}}}, "seed must be"),
        ({"n": 10**12, "parameters": {"lr": {"uniform": [0, 1]}}}, "over the limit"),
    ],
)
def test_bad_random_specs_are_one_line(tmp_path: Path, random: dict, expected: str) -> None:
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"random": random}))
    with pytest.raises(ConfigError, match=expected):
        load_file(path).configurations()
    result = CliRunner().invoke(main, ["sweep", str(NOTEBOOK), "-f", str(path),
                                       "-o", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 2
    _one_line(result.output, expected)


def test_a_huge_grid_is_refused_before_it_is_built(tmp_path: Path) -> None:
    space = SweepSpace(grid={f"p{i}": list(range(10)) for i in range(10)})  # 10**10 runs
    with pytest.raises(ConfigError, match="10,000,000,000 configurations, over the limit"):
        space.configurations()
    args = [str(NOTEBOOK), "-o", str(tmp_path / "out")]
    for name in ("lr", "epochs", "layers"):
        args += ["-g", f"{name}=" + ",".join(str(v) for v in range(30))]  # 27,000 runs
    result = CliRunner().invoke(main, ["sweep", *args])
    assert result.exit_code == 2
    _one_line(result.output, f"over the limit of {MAX_CONFIGURATIONS:,}")


def test_a_corrupt_cache_entry_is_recomputed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notebook = write_notebook(tmp_path / "toy.ipynb")
    counter, store = tmp_path / "counter.txt", tmp_path / "cache"
    args = [notebook, "-g", "a=1,2", "-p", "counter", counter, "--cache-dir", store, "--no-report"]
    assert sweep(*args, "-o", tmp_path / "one").exit_code == 0
    assert len(lines(counter)) == 2
    (record,) = [
        p for p in store.rglob("run.json") if json.loads(p.read_text())["parameters"]["a"] == 1
    ]
    record.write_text('{"status": "succ')  # a half-restored CI cache
    with caplog.at_level(logging.WARNING, logger="cml_nb.sweep.cache"):
        again = sweep(*args, "-o", tmp_path / "two")
    assert again.exit_code == 0, again.output
    assert any("ignoring corrupt run cache entry" in r.getMessage() for r in caplog.records)
    assert sorted(lines(counter)) == ["1,x", "1,x", "2,x"]  # only the corrupt one ran again
    runs = SweepResult.read(tmp_path / "two").runs
    assert [(r.cached, r.succeeded) for r in runs] == [(False, True), (True, True)]
    # ...and the recomputed run repaired the entry: a third sweep executes nothing.
    assert sweep(*args, "-o", tmp_path / "three").exit_code == 0
    assert len(lines(counter)) == 3


def test_an_entry_with_a_missing_record_is_ignored(tmp_path: Path) -> None:
    store = cache_mod.RunCache(tmp_path)
    entry = store.put("ab" * 32, {"version": 1}, {"notes.txt": b"x"})
    assert store.get("ab" * 32) is None and entry.is_dir()


@pytest.mark.parametrize("name", ["report.md.tmp", "report.json.tmp", "report.html.tmp"])
def test_bundle_writes_never_follow_a_planted_symlink(tmp_path: Path, name: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "shared"
    out.mkdir()
    (out / name).symlink_to(victim)
    write_bundle(Report(title="t", notebook="n.ipynb", status="succeeded"), out)
    assert victim.read_text() == "keep me"
    final = out / name.removesuffix(".tmp")
    assert final.is_file() and not final.is_symlink()


def test_asset_writes_never_follow_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    report = Report(title="t", notebook="n.ipynb", status="succeeded")
    asset = report.add_asset(scenarios.png(1), "image/png")
    (tmp_path / "out" / "assets").mkdir(parents=True)
    (tmp_path / "out" / "assets" / f"{asset.name}.tmp").symlink_to(victim)
    write_bundle(report, tmp_path / "out")
    assert victim.read_text() == "keep me"
    written = tmp_path / "out" / "assets" / asset.name
    assert written.read_bytes() == scenarios.png(1)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask  # readable as before


def test_sweep_json_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sweep.json.tmp").symlink_to(victim)
    SweepResult(str(tmp_path / "out"), "n.ipynb", "python3", [], 0, "s").write()
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "out" / "sweep.json").is_symlink()
