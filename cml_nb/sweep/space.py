"""Parameter spaces: grid, random and list; run names; shards of a space.

A space is an ordered list of configurations (``dict`` of parameter values). It is
built from the command line (``-g lr=0.1,0.01``) or from a YAML file::

    parameters: {epochs: 3}            # fixed, applied to every run
    grid: {lr: [0.1, 0.01], depth: [3, 5]}
    random:
      n: 8
      seed: 0
      parameters:
        lr: {loguniform: [1.0e-4, 1.0e-1]}
        depth: {randint: [2, 8]}
        optimizer: {choice: [sgd, adam]}
    list:
      - {lr: 0.5, depth: 2}

The configurations are the grid's, then the random draws, then the list, without
duplicates. The order is deterministic (a random space draws with its seed, 0 by
default), so every CI shard computes the same space and takes its own share.

A space holds at most :data:`MAX_CONFIGURATIONS` runs, counted before any is built;
a malformed ``random:`` entry is a one-line ConfigError naming the parameter.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cml_nb.errors import ConfigError, ParameterError
from cml_nb.parameters import load_yaml, parse_value
from cml_nb.secrets import looks_secret

Config = dict[str, Any]

#: Distributions a ``random:`` parameter may name, with the number of arguments.
DISTRIBUTIONS = {"uniform": 2, "loguniform": 2, "randint": 2, "normal": 2, "choice": None}
_SAFE = re.compile(r"[^A-Za-z0-9._=,+\-]")
MAX_NAME = 120
#: The most configurations a space may have. Checked before any is built: a grid of ten
#: parameters with ten values each is 10^10 runs, and would exhaust memory, not finish.
MAX_CONFIGURATIONS = 10_000


@dataclass
class SweepSpace:
    """A space of configurations, plus parameters fixed for every run.

    Attributes:
        grid: values of each parameter; every combination is a run.
        random: ``{"n", "seed", "parameters": {name: {distribution: args}}}``, or empty.
        listed: explicit configurations.
        fixed: parameters applied to every run (a swept value wins over a fixed one).
    """

    grid: dict[str, list[Any]] = field(default_factory=dict)
    random: dict[str, Any] = field(default_factory=dict)
    listed: list[Config] = field(default_factory=list)
    fixed: Config = field(default_factory=dict)

    def configurations(self) -> list[Config]:
        """Every configuration, fixed parameters included, in a stable order.

        Raises:
            ConfigError: the space is malformed, or has over MAX_CONFIGURATIONS runs.
        """
        n = self.random.get("n")
        drawn = n if isinstance(n, int) and not isinstance(n, bool) else 0  # draw() checks it
        count = grid_size(self.grid) + drawn + len(self.listed)
        if count > MAX_CONFIGURATIONS:
            raise ConfigError(_too_many(count))
        found: list[Config] = []
        seen: set[str] = set()
        for config in itertools.chain(grid(self.grid), draw(self.random), self.listed):
            full = {**self.fixed, **config}
            key = json.dumps(full, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                found.append(full)
        if not found and self.fixed:
            found.append(dict(self.fixed))
        return found

    def swept(self) -> list[str]:
        """Names of the parameters that vary, in the order they were declared."""
        names = list(self.grid)
        names += [n for n in self.random.get("parameters", {}) if n not in names]
        for config in self.listed:
            names += [n for n in config if n not in names]
        return names


def _too_many(count: int) -> str:
    return (
        f"the sweep space has {count:,} configurations, over the limit of "
        f"{MAX_CONFIGURATIONS:,}: sweep fewer values, or draw a sample with random: n"
    )


def grid_size(values: Mapping[str, Sequence[Any]]) -> int:
    """How many configurations the grid has, without building them."""
    if not values:
        return 0
    for name, options in values.items():
        if not isinstance(options, list | tuple) or not options:
            raise ConfigError(f"grid parameter {name!r} needs a non-empty list of values")
    return math.prod(len(options) for options in values.values())


def grid(values: Mapping[str, Sequence[Any]]) -> list[Config]:
    """The cartesian product: ``{"a": [1, 2], "b": [3]}`` -> ``[{a: 1, b: 3}, {a: 2, b: 3}]``.

    Raises:
        ConfigError: a parameter has no values, or the product is over MAX_CONFIGURATIONS.
    """
    count = grid_size(values)
    if not count:
        return []
    if count > MAX_CONFIGURATIONS:
        raise ConfigError(_too_many(count))
    names = list(values)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values.values())]


def _sample(rng: random.Random, name: str, spec: Any) -> Any:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(
            f"random parameter {name!r} must be one distribution, e.g. {{uniform: [0, 1]}}; "
            f"known: {', '.join(DISTRIBUTIONS)}"
        )
    kind, args = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        raise ConfigError(
            f"random parameter {name!r}: unknown distribution {kind!r}; "
            f"use one of {', '.join(DISTRIBUTIONS)}"
        )
    arity = DISTRIBUTIONS[kind]
    if not isinstance(args, list) or not args or (arity is not None and len(args) != arity):
        raise ConfigError(
            f"random parameter {name!r}: {kind} takes a list of {arity or 'some'} values"
        )
    if kind == "choice":
        return args[rng.randrange(len(args))]
    low, high = (_bound(name, kind, a) for a in args)
    if kind == "randint":
        if low != int(low) or high != int(high) or low > high:
            raise ConfigError(
                f"random parameter {name!r}: randint takes two integers, low <= high, "
                f"e.g. {{randint: [2, 8]}}"
            )
        return rng.randint(int(low), int(high))
    if kind == "normal":
        if high < 0:
            raise ConfigError(f"random parameter {name!r}: normal's deviation must be >= 0")
        return _round(rng.gauss(low, high))
    if kind == "loguniform":
        if low <= 0 or high <= 0:
            raise ConfigError(f"random parameter {name!r}: loguniform bounds must be > 0")
        return _round(math.exp(rng.uniform(math.log(low), math.log(high))))
    return _round(rng.uniform(low, high))


def _bound(name: str, kind: str, value: Any) -> float:
    # YAML gives strings, lists or booleans as readily as numbers; only finite numbers do.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            f"random parameter {name!r}: {kind} takes numbers, not {value!r}; "
            f"e.g. {{{kind}: [0.001, 0.1]}}"
        )
    return float(value)


def _round(value: float) -> float:
    # Six significant digits keep run names readable and are finer than any sweep needs.
    return float(f"{value:.6g}")


def draw(spec: Mapping[str, Any]) -> list[Config]:
    """``n`` random configurations drawn with ``seed`` (default 0) from ``parameters``."""
    if not spec:
        return []
    unknown = set(spec) - {"n", "seed", "parameters"}
    if unknown:
        raise ConfigError(
            f"random: unknown keys {', '.join(sorted(unknown))} (use n, seed, parameters)"
        )
    n, seed, distributions = spec.get("n"), spec.get("seed", 0), spec.get("parameters") or {}
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("random: n must be a positive integer (the number of runs to draw)")
    if n > MAX_CONFIGURATIONS:
        raise ConfigError(_too_many(n))
    if isinstance(seed, bool) or not isinstance(seed, int | str):
        raise ConfigError(f"random: seed must be an integer or a string, not {seed!r}")
    if not isinstance(distributions, dict) or not distributions:
        raise ConfigError("random: parameters must map names to distributions")
    rng = random.Random(seed)
    return [{name: _sample(rng, name, s) for name, s in distributions.items()} for _ in range(n)]


def split_values(text: str) -> list[str]:
    """Split ``0.1,'a,b',[1,2]`` at top-level commas (quotes and brackets respected)."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def parse_grid_option(option: str) -> tuple[str, list[Any]]:
    """``"lr=0.1,0.01"`` -> ``("lr", [0.1, 0.01])`` (values read like ``-p`` values)."""
    name, sep, values = option.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier() or not values.strip():
        raise ParameterError(f"-g {option!r} is not NAME=V1,V2,...: write e.g. -g lr=0.1,0.01")
    return name, [parse_value(v) for v in split_values(values) if v != ""]


def load_file(path: Path) -> SweepSpace:
    """A space from a YAML (or JSON) file with ``grid:``, ``random:``, ``list:``, ``parameters:``."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read sweep file {path}: {why}") from exc
    data = load_yaml(text, str(path), ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping with grid:, random:, list: or parameters:")
    unknown = set(data) - {"grid", "random", "list", "parameters"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown keys {', '.join(sorted(unknown))} (use grid, random, list, parameters)"
        )
    listed = data.get("list") or []
    if not isinstance(listed, list) or not all(isinstance(c, dict) for c in listed):
        raise ConfigError(f"{path}: list: must be a list of mappings of name: value")
    for key in ("grid", "random", "parameters"):
        if not isinstance(data.get(key) or {}, dict):
            raise ConfigError(f"{path}: {key}: must be a mapping")
    return SweepSpace(
        grid={
            str(k): list(v) if isinstance(v, list) else v
            for k, v in (data.get("grid") or {}).items()
        },
        random=dict(data.get("random") or {}),
        listed=[{str(k): v for k, v in c.items()} for c in listed],
        fixed={str(k): v for k, v in (data.get("parameters") or {}).items()},
    )


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: the second of four shards (1-based, like CI matrices)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ConfigError(f"--shard {text!r} is not K/N with 1 <= K <= N: write e.g. --shard 2/4")
    return int(match[1]), int(match[2])


def shard(items: Sequence[Any], index: int, count: int) -> list[Any]:
    """Shard ``index`` of ``count`` (1-based): every ``count``-th item from ``index - 1``."""
    return list(items[index - 1 :: count])


def _format(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, separators=(",", ":"))


def run_names(configs: Sequence[Config], swept: Iterable[str]) -> list[str]:
    """A stable folder name per configuration, from its swept values: ``lr=0.01,depth=5``.

    Unsafe characters become ``_`` and secret-looking parameters show ``masked``; a
    name that is too long, or that two configurations would share, ends with a
    hash of the configuration.
    """
    order = list(swept)
    names = []
    for config in configs:
        shown = [n for n in order if n in config] or sorted(config)
        # Secret-looking parameters never show their value in a folder name.
        shown_values = (f"{n}={'masked' if looks_secret(n) else _format(config[n])}" for n in shown)
        name = _SAFE.sub("_", ",".join(shown_values)) or "default"
        if len(name) > MAX_NAME:
            name = name[: MAX_NAME - 9] + "-" + config_hash(config)
        names.append(name)
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [
        f"{name}-{config_hash(config)}" if counts[name] > 1 else name
        for name, config in zip(names, configs, strict=True)
    ]


def config_hash(config: Mapping[str, Any]) -> str:
    """Eight hex digits that identify a configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
