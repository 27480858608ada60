from __future__ import annotations

import math

import nbformat
import pytest

from cml_nb.metrics import METRICS_MIME, _clean, read_metrics


def _output(payload: dict) -> dict:
    return nbformat.v4.new_output("display_data", data={METRICS_MIME: payload, "text/plain": "x"})


def test_read_back_last_values_history_and_params() -> None:
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        _output({"metrics": {"loss": 1.0}, "step": 0}),
        _output({"metrics": {"loss": 0.5}, "step": 1}),
        _output({"metrics": {"acc": 0.9}}),
        _output({"params": {"opt": "adam"}}),
    ]
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert read_metrics(nb) == {
        "metrics": {"loss": 0.5, "acc": 0.9},
        "history": {"loss": [{"step": 0, "value": 1.0}, {"step": 1, "value": 0.5}]},
        "params": {"opt": "adam"},
    }


def test_values_are_json_scalars() -> None:
    np = pytest.importorskip("numpy")
    assert _clean(np.float32(0.5)) == 0.5 and isinstance(_clean(np.int64(3)), int)
    assert _clean(math.nan) is None and _clean(float("inf")) is None
    with pytest.raises(TypeError, match="numbers or strings"):
        _clean(object())


def test_outside_jupyter_prints(capsys: pytest.CaptureFixture[str]) -> None:
    import cml_nb

    cml_nb.log_metric("accuracy", 0.9)
    assert "accuracy = 0.9" in capsys.readouterr().out
