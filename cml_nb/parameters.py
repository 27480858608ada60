"""Notebook parameters: parse them, merge their sources, check them against the notebook.

Sources, weakest first: ``-f FILE`` (YAML or JSON, in the order given), ``-y YAML``,
then ``-p NAME VALUE``. A ``-p`` value is read as a Python literal, else as YAML,
else kept as a string, so ``5`` is an int, ``1e-3`` a float, ``[1, 2]`` a list and
``abc`` a string. Types are checked against the defaults in the cell tagged
``parameters`` (papermill's convention).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cml_nb.errors import CmlNbError, ParameterError

PARAMETERS_TAG = "parameters"
_UNKNOWN = object()


#: Nodes a YAML document may expand to, every use of an alias counted in full: real
#: parameter and sweep files have hundreds; a "billion laughs" file has billions.
MAX_YAML_NODES = 100_000


def load_yaml(text: str, source: str, error: type[CmlNbError] = ParameterError) -> Any:
    """``yaml.safe_load(text)``, refusing recursive aliases and documents that expand huge.

    PyYAML builds aliases as shared objects, so such a file loads quickly, then hangs or
    overflows whatever walks it (JSON, papermill's parameter cell).

    Raises:
        CmlNbError: ``error`` (ParameterError by default) with a one-line message.
    """
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_expansion(node, source, error)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{source} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise error(f"{source} is nested too deeply: flatten it") from None


def _check_expansion(root: Any, source: str, error: type[CmlNbError]) -> None:
    # Size of each node's expansion, memoised by identity; a node met again while its
    # own subtree is open is a recursive alias. Iterative: no Python recursion limit.
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        value = node.value if isinstance(node.value, list) else []
        children = [c for pair in value for c in (pair if isinstance(pair, tuple) else (pair,))]
        if done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_YAML_NODES:
                raise error(
                    f"{source} expands to over {MAX_YAML_NODES:,} values through its aliases "
                    "(&/*): write the values out, or use fewer aliases"
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise error(f"{source} has a recursive alias (an &anchor used inside itself)")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def parse_value(text: str) -> Any:
    """``"5"`` -> 5, ``"0.1"`` -> 0.1, ``"true"`` -> True, ``"{a: 1}"`` -> dict, ``"abc"`` -> "abc".

    Raises:
        ParameterError: the value is YAML with recursive or exploding aliases.
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return load_yaml(text, f"the value {text[:40]!r}")
    except ParameterError as error:
        if "is not valid YAML" in error.message:
            return text
        raise


def _mapping(data: Any, source: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParameterError(
            f"{source} must hold a mapping of name: value, not {type(data).__name__}"
        )
    return {str(k): v for k, v in data.items()}


def load_file(path: Path) -> dict[str, Any]:
    """Parameters from a ``.yaml``/``.yml``/``.json`` file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ParameterError(f"cannot read parameters file {path}: {exc.strerror}") from exc
    if path.suffix.lower() == ".json":
        try:
            return _mapping(json.loads(text), str(path))
        except json.JSONDecodeError as exc:
            raise ParameterError(f"{path} is not valid JSON: {exc}") from exc
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str = "-y") -> dict[str, Any]:
    """Parameters from a YAML string such as ``"lr: 0.1\\nepochs: 3"``."""
    return _mapping(load_yaml(text, source), source)


def collect(
    files: Iterable[Path] = (),
    yaml_strings: Iterable[str] = (),
    pairs: Iterable[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Merge all sources; later and more specific sources win."""
    merged: dict[str, Any] = {}
    for path in files:
        merged.update(load_file(Path(path)))
    for text in yaml_strings:
        merged.update(parse_yaml(text))
    for name, value in pairs:
        merged[name] = parse_value(value)
    return merged


@dataclass(frozen=True)
class Declared:
    """A parameter declared in the notebook's ``parameters`` cell."""

    name: str
    default: Any  # _UNKNOWN when the default is not a literal (e.g. a function call)
    annotation: str | None = None


def find_parameters_cell(nb: Mapping[str, Any]) -> int | None:
    """Index of the first code cell tagged ``parameters``, if any."""
    for index, cell in enumerate(nb.get("cells", ())):
        tags = cell.get("metadata", {}).get("tags", ())
        if cell.get("cell_type") == "code" and PARAMETERS_TAG in tags:
            return index
    return None


def declared(nb: Mapping[str, Any]) -> dict[str, Declared] | None:
    """The parameters the notebook declares, or None when it has no ``parameters`` cell."""
    index = find_parameters_cell(nb)
    if index is None:
        return None
    source = nb["cells"][index].get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(
            f"the parameters cell (cell {index}) is not valid Python: {exc.msg}"
        ) from exc
    found: dict[str, Declared] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value, annotation = node.targets, node.value, None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value, annotation = [node.target], node.value, ast.unparse(node.annotation)
        else:
            continue
        try:
            default = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError):
            default = _UNKNOWN
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = Declared(target.id, default, annotation)
    return found


def _coerce(name: str, value: Any, spec: Declared) -> Any:
    default = spec.default
    if default is _UNKNOWN or default is None:
        return value
    expected = type(default)
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif expected is str:
        # A string default means the user meant text: `-p name 5` is "5".
        return value if isinstance(value, str) else str(value)
    elif expected in (list, tuple):
        ok = isinstance(value, list | tuple)
    else:
        ok = isinstance(value, expected)
    if not ok:
        from cml_nb.secrets import MASK, Scrubber, looks_secret

        # Errors reach CI logs: a secret parameter's value (or a token given to the
        # wrong parameter) is never echoed, only its type.
        secret = looks_secret(name)
        shown = MASK if secret else Scrubber(include_env=False).scrub(repr(value))
        example = MASK if secret else repr(default)
        raise ParameterError(
            f"parameter {name!r} expects {expected.__name__} (default {example}), "
            f"got {shown} ({type(value).__name__}): pass e.g. -p {name} {example}"
        )
    return value


def validate(
    nb: Mapping[str, Any], parameters: Mapping[str, Any], *, allow_unknown: bool = False
) -> dict[str, Any]:
    """Check names and types against the notebook's ``parameters`` cell; returns coerced values.

    A notebook without a ``parameters`` cell accepts any names (papermill then injects
    the cell at the top); the caller warns about it.
    """
    specs = declared(nb)
    if specs is None:
        return dict(parameters)
    unknown = sorted(set(parameters) - set(specs))
    if unknown and not allow_unknown:
        known = ", ".join(sorted(specs)) or "(none)"
        raise ParameterError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
            f"the notebook declares {known} (pass --allow-unknown to inject anyway)"
        )
    return {
        name: (_coerce(name, value, specs[name]) if name in specs else value)
        for name, value in parameters.items()
    }
