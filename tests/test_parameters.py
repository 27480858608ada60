from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from cml_nb import parameters
from cml_nb.errors import ParameterError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5), ("0.1", 0.1), ("1e-3", 0.001), ("true", True), ("True", True), ("None", None),
        ("[1, 2]", [1, 2]), ("{a: 1}", {"a": 1}), ("{'a': 1}", {"a": 1}), ("abc", "abc"),
        ("adam-w", "adam-w"), ("", None),
    ],
)  # fmt: skip
def test_parse_value(text: str, value: object) -> None:
    assert parameters.parse_value(text) == value


def test_collect_precedence(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"lr": 1, "seed": 1}')
    (tmp_path / "b.yml").write_text("lr: 2\n")
    merged = parameters.collect(
        [tmp_path / "a.json", tmp_path / "b.yml"], ["lr: 3\nname: y"], [("name", "z")]
    )
    assert merged == {"lr": 3, "seed": 1, "name": "z"}


def test_bad_files_fail_clearly(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ParameterError, match="not valid JSON"):
        parameters.load_file(tmp_path / "bad.json")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ParameterError, match="must hold a mapping"):
        parameters.load_file(tmp_path / "list.yaml")
    with pytest.raises(ParameterError, match="cannot read"):
        parameters.load_file(tmp_path / "missing.yaml")


def _nb(source: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return nbformat.v4.new_notebook(cells=[cell])


def test_validate_types_against_defaults() -> None:
    nb = _nb(
        "n: int = 3\nlr = 0.1\nname = 'a'\nflag = False\nlayers = [1]\nmodel = make()\nopt = None"
    )
    ok = parameters.validate(
        nb, {"n": 5, "lr": 1, "name": 7, "flag": True, "layers": [2, 3], "model": "x", "opt": 1}
    )
    assert ok == {
        "n": 5,
        "lr": 1.0,
        "name": "7",
        "flag": True,
        "layers": [2, 3],
        "model": "x",
        "opt": 1,
    }
    assert isinstance(ok["lr"], float)
    for bad in ({"n": "abc"}, {"n": 1.5}, {"n": True}, {"lr": "x"}, {"flag": 1}, {"layers": 3}):
        with pytest.raises(ParameterError, match="expects"):
            parameters.validate(nb, bad)


def test_unknown_names_listed() -> None:
    nb = _nb("a = 1\nb = 2")
    with pytest.raises(ParameterError, match="unknown parameter c: the notebook declares a, b"):
        parameters.validate(nb, {"c": 1})
    assert parameters.validate(nb, {"c": 1}, allow_unknown=True) == {"c": 1}


def test_no_parameters_cell_accepts_anything() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    assert parameters.declared(nb) is None
    assert parameters.validate(nb, {"y": 2}) == {"y": 2}


def test_parameters_cell_syntax_error() -> None:
    with pytest.raises(ParameterError, match="not valid Python"):
        parameters.declared(_nb("x = = 1"))
