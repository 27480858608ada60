"""Parameter spaces, shards, run names and cache keys: pure functions, no kernels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cml_nb.errors import ConfigError, ParameterError
from cml_nb.sweep import cache, space
from cml_nb.sweep.executors import available, get_executor
from cml_nb.sweep.space import SweepSpace


def test_grid_is_the_cartesian_product_in_declared_order() -> None:
    configs = SweepSpace(grid={"lr": [0.1, 0.01], "depth": [3, 5]}).configurations()
    assert configs == [
        {"lr": 0.1, "depth": 3},
        {"lr": 0.1, "depth": 5},
        {"lr": 0.01, "depth": 3},
        {"lr": 0.01, "depth": 5},
    ]


def test_fixed_parameters_apply_to_every_run_and_swept_values_win() -> None:
    configs = SweepSpace(grid={"lr": [1, 2]}, fixed={"epochs": 3, "lr": 9}).configurations()
    assert configs == [{"epochs": 3, "lr": 1}, {"epochs": 3, "lr": 2}]


def test_random_draws_are_reproducible_with_a_seed_and_in_range() -> None:
    spec = {
        "n": 20,
        "seed": 7,
        "parameters": {
            "lr": {"loguniform": [1e-4, 1e-1]},
            "depth": {"randint": [2, 4]},
            "opt": {"choice": ["sgd", "adam"]},
            "dropout": {"uniform": [0.0, 0.5]},
        },
    }
    first, again = space.draw(spec), space.draw(spec)
    assert first == again
    assert space.draw({**spec, "seed": 8}) != first
    assert all(1e-4 <= c["lr"] <= 1e-1 for c in first)
    assert {c["depth"] for c in first} <= {2, 3, 4}
    assert {c["opt"] for c in first} == {"sgd", "adam"}
    assert all(0.0 <= c["dropout"] <= 0.5 for c in first)


@pytest.mark.parametrize(
    "spec",
    [
        {"n": 2, "parameters": {"lr": {"gamma": [1, 2]}}},
        {"n": 2, "parameters": {"lr": {"uniform": [1]}}},
        {"n": 0, "parameters": {"lr": {"uniform": [0, 1]}}},
        {"n": 2, "parameters": {"lr": {"loguniform": [0, 1]}}},
        {"n": 2, "parameters": {}},
        {"n": 2, "sed": 1, "parameters": {"lr": {"uniform": [0, 1]}}},
    ],
)
def test_bad_random_specs_fail_with_a_config_error(spec: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        space.draw(spec)


def test_grid_random_and_list_are_joined_without_duplicates() -> None:
    combined = SweepSpace(
        grid={"a": [1, 2]},
        random={"n": 2, "parameters": {"a": {"choice": [7]}}},
        listed=[{"a": 1}, {"a": 3}],
    )
    assert combined.configurations() == [{"a": 1}, {"a": 2}, {"a": 7}, {"a": 3}]


def test_yaml_file_with_every_section(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "parameters: {epochs: 2}\n"
        "grid: {lr: [0.1, 0.2]}\n"
        "random: {n: 2, seed: 1, parameters: {depth: {randint: [1, 9]}}}\n"
        "list:\n  - {lr: 0.5, depth: 4}\n"
    )
    loaded = space.load_file(path)
    configs = loaded.configurations()
    assert len(configs) == 5
    assert all(c["epochs"] == 2 for c in configs)
    assert configs[-1] == {"epochs": 2, "lr": 0.5, "depth": 4}
    assert loaded.swept() == ["lr", "depth"]


@pytest.mark.parametrize(
    "text", ["grid: [1, 2]\n", "colors: {a: [1]}\n", "- 1\n", "list: [1, 2]\n", "grid: {a: [}\n"]
)
def test_bad_yaml_files_fail_with_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        space.load_file(path).configurations()


def test_grid_option_values_are_typed_and_quotes_and_brackets_kept() -> None:
    assert space.parse_grid_option("lr=0.1,1e-3,5") == ("lr", [0.1, 0.001, 5])
    assert space.parse_grid_option("opt=sgd,'a,b',[1, 2],true") == (
        "opt",
        ["sgd", "a,b", [1, 2], True],
    )
    for bad in ("lr", "=1,2", "lr=", "my lr=1"):
        with pytest.raises(ParameterError):
            space.parse_grid_option(bad)


@given(st.integers(min_value=0, max_value=60), st.integers(min_value=1, max_value=9))
def test_shards_partition_the_space(size: int, count: int) -> None:
    items = list(range(size))
    parts = [space.shard(items, k, count) for k in range(1, count + 1)]
    assert sorted(i for part in parts for i in part) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_bad_shard_specs_fail(text: str) -> None:
    with pytest.raises(ConfigError):
        space.parse_shard(text)


def test_run_names_are_readable_stable_and_unique() -> None:
    configs = [{"lr": 0.01, "depth": 5, "epochs": 3}, {"lr": 0.1, "depth": 5, "epochs": 3}]
    assert space.run_names(configs, ["lr", "depth"]) == ["lr=0.01,depth=5", "lr=0.1,depth=5"]
    # Unsafe characters are replaced; configurations that collide get a hash suffix.
    clashing = [{"p": "a/b"}, {"p": "a b"}]
    names = space.run_names(clashing, ["p"])
    assert len(set(names)) == 2 and all("/" not in n and " " not in n for n in names)
    assert names == space.run_names(clashing, ["p"])
    long = space.run_names([{"text": "x" * 500}], ["text"])[0]
    assert len(long) <= space.MAX_NAME


def _nb(
    source: str, outputs: list[dict[str, object]] | None = None, count: int | None = None
) -> dict[str, object]:
    return {
        "cells": [
            {
                "cell_type": "code",
                "id": "abc",
                "source": source,
                "metadata": {"tags": ["parameters"], "collapsed": True},
                "outputs": outputs or [],
                "execution_count": count,
            }
        ],
        "metadata": {},
    }


def test_notebook_digest_ignores_outputs_counts_and_ids() -> None:
    plain = cache.notebook_digest(_nb("x = 1"))
    executed = _nb("x = 1", [{"output_type": "stream", "name": "stdout", "text": "hi"}], 4)
    executed["cells"][0]["id"] = "zzz"  # type: ignore[index]
    assert cache.notebook_digest(executed) == plain
    assert cache.notebook_digest(_nb("x = 2")) != plain


def test_cache_key_changes_with_parameters_kernel_and_dependency_content(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("1,2\n")
    digest = cache.notebook_digest(_nb("x = 1"))

    def key(params: dict[str, object], kernel: str = "python3") -> str:
        deps = cache.deps_digest([data])
        return cache.cache_key(cache.key_inputs(digest, params, kernel, deps))

    base = key({"x": 1})
    assert key({"x": 1}) == base
    assert key({"x": 2}) != base
    assert key({"x": 1}, "other") != base
    (data / "a.csv").write_text("1,3\n")
    assert key({"x": 1}) != base
    with pytest.raises(ConfigError, match="no such file"):
        cache.deps_digest([tmp_path / "missing.csv"])


def test_run_cache_round_trip_and_incomplete_entries_ignored(tmp_path: Path) -> None:
    store = cache.RunCache(tmp_path / "cache")
    assert store.get("ab" * 32) is None
    record = json.dumps({"notebook": "nb.ipynb", "output": "nb.ipynb", "status": "succeeded"})
    files = {"run.json": record.encode(), "nb.ipynb": b"nb"}
    store.put("ab" * 32, {"parameters": {"x": 1}}, files)
    assert store.files("ab" * 32) == files
    key_file = json.loads((store.entry("ab" * 32) / cache.KEY_FILE).read_text())
    assert key_file["parameters"] == {"x": 1}
    (store.entry("ab" * 32) / cache.KEY_FILE).unlink()
    assert store.get("ab" * 32) is None


def test_unknown_executor_lists_the_known_ones() -> None:
    assert {"local", "dask"} <= set(available())
    with pytest.raises(ConfigError, match="local"):
        get_executor("nope")
