"""Search sweeps: a sweep file with ``method:`` read into a ``SearchSpec``; samplers and pruners.

A search file names a method and typed parameters; Optuna proposes each trial::

    method: tpe            # tpe | random | cmaes | grid, or {type: tpe, n_startup_trials: 5}
    trials: 40
    seed: 1
    metric: val_loss
    goal: min
    pruner: median         # median | hyperband | none, or {type: median, n_warmup_steps: 2}
    parameters:
      lr: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
      depth: {type: int, low: 2, high: 8}
      optimizer: {type: categorical, choices: [adam, sgd]}
      epochs: 3            # a plain value is fixed for every trial
    enqueue:               # optional: configurations to try first (Optuna's enqueue_trial)
      - {lr: 0.01, depth: 3, optimizer: adam}

A file without ``method:``, or with ``method: grid|random`` and today's ``grid:``,
``random:`` or ``list:`` sections, keeps today's meaning (a ``SweepSpace``).
Samplers and pruners are registries keyed by name; their options are checked
against the Optuna class's signature, so every mistake is a one-line ConfigError
(exit 2) before any run.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cml_nb.errors import ConfigError, MissingDependencyError
from cml_nb.sweep import space as space_mod

SEARCH_KEYS = ("method", "trials", "seed", "metric", "goal", "pruner", "parameters", "enqueue")
LEGACY_KEYS = ("grid", "random", "list")
#: Keys each parameter type takes besides ``type``.
PARAM_KEYS = {
    "float": ("low", "high", "log", "step"),
    "int": ("low", "high", "log", "step"),
    "categorical": ("choices",),
}


def optuna_module() -> Any:
    """``optuna``, or a MissingDependencyError naming the ``search`` extra."""
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError("a search sweep (method:)", "search", "optuna") from None
    # Optuna logs every trial at INFO; the sweep prints its own progress lines.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass
class ParamSpec:
    """One searched parameter: a float or int range, or categorical choices."""

    name: str
    type: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)

    def distribution(self, optuna: Any) -> Any:
        """The Optuna distribution this parameter is sampled from."""
        dist = optuna.distributions
        if self.type == "categorical":
            return dist.CategoricalDistribution(self.choices)
        if self.type == "int":
            step = int(self.step or 1)
            return dist.IntDistribution(int(self.low), int(self.high), log=self.log, step=step)
        return dist.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_values(self) -> list[Any]:
        """Every value a grid visits (categorical choices, or a stepped range)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ConfigError(
                f"parameter {self.name!r}: method grid needs a step for a float range "
                f"(e.g. step: 0.1), or categorical choices"
            )
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [float(f"{self.low + i * self.step:.12g}") for i in range(count)]

    def example(self) -> Any:
        """A value of the right type, to check the notebook's parameters cell before any run."""
        if self.type == "categorical":
            return self.choices[0]
        return int(self.low) if self.type == "int" else float(self.low)


@dataclass
class SearchSpec:
    """A search sweep as read from its file (see the module docstring)."""

    method: str
    method_options: dict[str, Any]
    trials: int
    parameters: dict[str, ParamSpec]
    fixed: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    metric: str | None = None
    goal: str | None = None
    pruner: str = "none"
    pruner_options: dict[str, Any] = field(default_factory=dict)
    enqueue: list[dict[str, Any]] = field(default_factory=list)

    def swept(self) -> list[str]:
        """Names of the searched parameters, in the order they were declared."""
        return list(self.parameters)

    def identity(self) -> dict[str, Any]:
        """What makes two searches the same study (``trials`` and the pruner do not)."""
        return {
            "method": self.method,
            "options": self.method_options,
            "seed": self.seed,
            "parameters": {n: vars(p) for n, p in self.parameters.items()},
            "fixed": self.fixed,
        }

    def distributions(self, optuna: Any) -> dict[str, Any]:
        """``{name: optuna distribution}`` for ``study.ask``."""
        return {name: p.distribution(optuna) for name, p in self.parameters.items()}

    def sampler(self, optuna: Any, offset: int = 0) -> Any:
        """The configured Optuna sampler, seeded with ``seed + offset``.

        A resumed study passes its trial count as ``offset``: the same seed again would
        replay the first invocation's random draws (startup trials included).
        """
        return SAMPLERS[self.method](
            self, optuna, None if self.seed is None else self.seed + offset
        )

    def make_pruner(self, optuna: Any) -> Any:
        """The configured Optuna pruner."""
        return make_pruner(self.pruner, self.pruner_options, optuna)


def _tpe(spec: SearchSpec, optuna: Any, seed: int | None) -> Any:
    return optuna.samplers.TPESampler(seed=seed, **spec.method_options)


def _random(spec: SearchSpec, optuna: Any, seed: int | None) -> Any:
    return optuna.samplers.RandomSampler(seed=seed, **spec.method_options)


def _cmaes(spec: SearchSpec, optuna: Any, seed: int | None) -> Any:
    try:
        import cmaes  # noqa: F401
    except ImportError:
        raise MissingDependencyError("method: cmaes", "search", "cmaes") from None
    return optuna.samplers.CmaEsSampler(seed=seed, **spec.method_options)


def _grid(spec: SearchSpec, optuna: Any, seed: int | None) -> Any:
    values = {name: p.grid_values() for name, p in spec.parameters.items()}

    class Grid(optuna.samplers.GridSampler):  # type: ignore[misc]
        # GridSampler calls Study.stop() once the grid is covered, which raises outside
        # study.optimize(); the ask/tell loop stops at ``trials`` instead.
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return Grid(values, seed=seed, **spec.method_options)


Factory = Callable[[SearchSpec, Any, "int | None"], Any]
#: Samplers by method name, with the Optuna class whose keyword options they accept.
SAMPLERS: dict[str, Factory] = {"tpe": _tpe, "random": _random, "cmaes": _cmaes, "grid": _grid}
_SAMPLER_CLASSES = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "grid": "GridSampler",
}
#: Pruners by name: the Optuna class in ``optuna.pruners``.
PRUNERS: dict[str, str] = {
    "median": "MedianPruner",
    "hyperband": "HyperbandPruner",
    "percentile": "PercentilePruner",
    "none": "NopPruner",
}
#: Options cml-nb sets itself, which a file may not set again.
_RESERVED = {"seed", "search_space"}


def make_pruner(name: str, options: Mapping[str, Any], optuna: Any) -> Any:
    """A pruner by registry name (see ``PRUNERS``)."""
    return getattr(optuna.pruners, PRUNERS[name])(**options)


def _named(key: str, value: Any, registry: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``tpe`` or ``{type: tpe, option: value}`` -> ``("tpe", {option: value})``."""
    options: dict[str, Any] = {}
    if isinstance(value, dict):
        options = {str(k): v for k, v in value.items() if k != "type"}
        value = value.get("type")
    if not isinstance(value, str) or value not in registry:
        raise ConfigError(
            f"{key}: {value!r} is not one of {', '.join(registry)} "
            f"(write e.g. {key}: {next(iter(registry))}, or {{type: NAME, option: value}})"
        )
    return value, options


def _check_options(key: str, name: str, cls: Any, options: Mapping[str, Any]) -> None:
    accepted = [p for p in inspect.signature(cls).parameters if p not in _RESERVED and p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{key}: {name} takes no option {', '.join(unknown)} (it takes {', '.join(accepted)})"
        )


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"parameter {name!r}: {key} must be a finite number, not {value!r}")
    return float(value)


def _param(name: str, spec: Mapping[str, Any]) -> ParamSpec:
    kind = spec.get("type")
    if kind not in PARAM_KEYS:
        raise ConfigError(
            f"parameter {name!r}: type must be float, int or categorical, not {kind!r} "
            f"(e.g. {name}: {{type: float, low: 0.0, high: 1.0}})"
        )
    unknown = sorted(set(spec) - {"type", *PARAM_KEYS[kind]})
    if unknown:
        raise ConfigError(
            f"parameter {name!r}: unknown keys {', '.join(map(str, unknown))} "
            f"(a {kind} takes {', '.join(PARAM_KEYS[kind])})"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        scalar = (str, int, float, bool, type(None))
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"parameter {name!r}: choices must be a non-empty list")
        if not all(isinstance(c, scalar) for c in choices):
            raise ConfigError(
                f"parameter {name!r}: choices must be numbers, strings, booleans or null"
            )
        return ParamSpec(name, kind, choices=list(choices))
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"parameter {name!r}: a {kind} needs low and high")
    low, high = _number(name, "low", spec["low"]), _number(name, "high", spec["high"])
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"parameter {name!r}: log must be true or false, not {log!r}")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ConfigError(f"parameter {name!r}: an int range needs integer low and high")
    if low > high or (kind == "float" and low == high):
        raise ConfigError(f"parameter {name!r}: low ({low:g}) must be below high ({high:g})")
    if log and low <= 0:
        raise ConfigError(f"parameter {name!r}: a log range needs low > 0 (got {low:g})")
    if step is not None:
        step = _number(name, "step", step)
        if step <= 0 or (kind == "int" and step != int(step)):
            raise ConfigError(f"parameter {name!r}: step must be a positive {kind}")
        if log:
            raise ConfigError(f"parameter {name!r}: log and step cannot be used together")
    return ParamSpec(name, kind, low, high, log, step)


def _positive_int(key: str, value: Any, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ConfigError(f"{key}: must be an integer from 1 to {limit:,}, not {value!r}")
    return value


def parse_search(data: Mapping[str, Any], where: str) -> SearchSpec:
    """A SearchSpec from a search file's mapping, every key and range checked.

    Raises:
        ConfigError: an unknown key, an invalid range, option or method.
        MissingDependencyError: Optuna is not installed.
    """
    unknown = sorted(set(data) - set(SEARCH_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {', '.join(map(str, unknown))} "
            f"(a search file takes {', '.join(SEARCH_KEYS)})"
        )
    method, method_options = _named("method", data.get("method"), SAMPLERS)
    pruner, pruner_options = _named("pruner", data.get("pruner") or "none", PRUNERS)
    raw = data.get("parameters") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: parameters: must map names to {{type: ...}} specs")
    searched = {str(n): _param(str(n), s) for n, s in raw.items() if isinstance(s, dict)}
    fixed = {str(n): v for n, v in raw.items() if not isinstance(v, dict)}
    if not searched:
        raise ConfigError(
            f"{where}: parameters: needs at least one searched parameter, "
            "e.g. lr: {type: float, low: 0.0001, high: 0.1, log: true}"
        )
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"{where}: seed must be an integer, not {seed!r}")
    goal = data.get("goal")
    if goal is not None and goal not in ("max", "min"):
        raise ConfigError(f"{where}: goal must be max or min, not {goal!r}")
    metric = data.get("metric")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise ConfigError(f"{where}: metric must be the name of a logged metric")
    enqueue = data.get("enqueue") or []
    if not isinstance(enqueue, list) or not all(isinstance(c, dict) for c in enqueue):
        raise ConfigError(f"{where}: enqueue: must be a list of mappings of name: value")
    for config in enqueue:
        stray = sorted(set(map(str, config)) - set(searched))
        if stray:
            raise ConfigError(f"{where}: enqueue names unsearched parameters {', '.join(stray)}")
    spec = SearchSpec(
        method=method,
        method_options=method_options,
        trials=0,
        parameters=searched,
        fixed=fixed,
        seed=seed,
        metric=metric,
        goal=goal,
        pruner=pruner,
        pruner_options=pruner_options,
        enqueue=[{str(k): v for k, v in c.items()} for c in enqueue],
    )
    optuna = optuna_module()
    _check_options("method", method, getattr(optuna.samplers, _SAMPLER_CLASSES[method]),
                   method_options)  # fmt: skip
    _check_options("pruner", pruner, getattr(optuna.pruners, PRUNERS[pruner]), pruner_options)
    limit = space_mod.MAX_CONFIGURATIONS
    if method == "grid":
        size = math.prod(len(p.grid_values()) for p in searched.values())
        spec.trials = _positive_int("trials", data.get("trials", min(size, limit)), limit)
    elif "trials" not in data:
        raise ConfigError(f"{where}: trials: is missing (how many trials to run, e.g. trials: 40)")
    else:
        spec.trials = _positive_int("trials", data["trials"], limit)
    try:  # Optuna's own checks (e.g. a step that does not divide the range only warns)
        spec.sampler(optuna)
        spec.make_pruner(optuna)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {method}/{pruner}: {exc}") from None
    return spec


def read_sweep_file(path: Path) -> space_mod.SweepSpace | SearchSpec:
    """A sweep file: a ``SearchSpec`` when it names a search, else today's ``SweepSpace``."""
    from cml_nb.parameters import load_yaml

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return space_mod.load_file(path)  # its message says what went wrong
    data = load_yaml(text, str(path), ConfigError)
    if not isinstance(data, dict) or "method" not in data:
        return space_mod.load_file(path)
    legacy = [k for k in LEGACY_KEYS if k in data]
    if legacy:
        if data["method"] not in ("grid", "random"):
            raise ConfigError(
                f"{path}: method {data['method']!r} searches typed parameters: "
                f"replace {', '.join(legacy)}: with parameters: {{name: {{type: ...}}}}"
            )
        return _legacy_space(data, path)
    return parse_search(data, str(path))


def _legacy_space(data: Mapping[str, Any], path: Path) -> space_mod.SweepSpace:
    """``method: grid|random`` over today's sections: exactly what the file means without it."""
    import tempfile

    import yaml

    # Through load_file, so its checks of every section apply unchanged.
    rest = {k: v for k, v in data.items() if k != "method"}
    with tempfile.TemporaryDirectory(prefix="cml-nb-sweep-") as tmp:
        copy = Path(tmp) / path.name
        copy.write_text(yaml.safe_dump(rest))
        try:
            return space_mod.load_file(copy)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(copy), str(path))) from None
