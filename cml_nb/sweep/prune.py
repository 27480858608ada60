"""Pruning inside a worker: intermediate values read as they stream out of the kernel.

The study lives with the sweep process; a worker (a local process, a Dask worker on
another machine) may not reach its storage. So each task carries a ``PruneSpec``:
the pruner's name and options, the direction, the metric, and a snapshot of the
study's finished trials taken when the trial was asked. The worker rebuilds that
study in memory and asks the pruner after each ``log_metric(metric, v, step=s)``
output, as it arrives (execute.py's ``output`` events). A trial to prune has its
kernel interrupted, like Ctrl-C in Jupyter: the running cell stops, later cells do
not run, and the partial notebook is written as usual. The sweep process then
reports the trial's values to the real study and marks it pruned.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from cml_nb.sweep.result import PRUNED as PRUNED

log = logging.getLogger(__name__)


@dataclass
class PruneSpec:
    """What a worker needs to decide pruning without the study's storage.

    Attributes:
        pruner: a name in ``search.PRUNERS``.
        options: the pruner's keyword options.
        direction: ``minimize`` or ``maximize``.
        metric: the metric whose stepped values are reported.
        trials: the study's finished trials (Optuna ``FrozenTrial``) when this one was asked.
        study_name: the study's name (hyperband assigns brackets by name and trial number).
    """

    pruner: str
    options: dict[str, Any]
    direction: str
    metric: str
    trials: list[Any] = field(default_factory=list)
    study_name: str | None = None


class PruneWatch:
    """An execution hook: report each stepped value of the metric, interrupt when pruned."""

    def __init__(self, spec: PruneSpec, km: Any) -> None:
        from cml_nb.sweep.search import make_pruner, optuna_module

        optuna = optuna_module()
        self.spec, self.km = spec, km
        study = optuna.create_study(
            study_name=spec.study_name,
            direction=spec.direction,
            pruner=make_pruner(spec.pruner, spec.options, optuna),
        )
        study.add_trials(spec.trials)
        self.trial = study.ask()
        self.seen: dict[int, int] = {}  # cell index -> outputs already read
        self.steps: set[int] = set()
        self.pruned_step: int | None = None

    def __call__(self, event: Any) -> None:
        """Read the new outputs of the running cell (see ``execute.CellEvent``)."""
        if self.pruned_step is not None or event.kind == "cell_start" or event.live_nb is None:
            return
        from cml_nb.metrics import METRICS_MIME

        outputs = event.live_nb.cells[event.index].get("outputs", [])
        for output in outputs[self.seen.get(event.index, 0) :]:
            payload = (output.get("data") or {}).get(METRICS_MIME)
            if isinstance(payload, dict):
                self._report(payload)
        self.seen[event.index] = len(outputs)

    def _report(self, payload: dict[str, Any]) -> None:
        step, value = payload.get("step"), (payload.get("metrics") or {}).get(self.spec.metric)
        if (
            not isinstance(step, int)
            or isinstance(value, bool)
            or not isinstance(value, int | float)
        ):
            return
        if step in self.steps or self.pruned_step is not None:
            return  # Optuna keeps the first value of a step
        self.steps.add(step)
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            self.pruned_step = step
            self._interrupt()

    def _interrupt(self) -> None:
        # The hook runs inside nbclient's event loop: schedule the interrupt on it.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            loop.create_task(self.km.interrupt_kernel())
        else:
            from jupyter_core.utils import run_sync

            run_sync(self.km.interrupt_kernel)()


def mark_pruned(record: dict[str, Any], files: dict[str, bytes], step: int) -> None:
    """Mark a run record, and its ``run.json`` among ``files``, as pruned at ``step``."""
    from cml_nb.records import RUN_RECORD_NAME

    message = f"pruned at step {step}: the pruner stopped this trial"
    record.update(status=PRUNED, message=message)
    if RUN_RECORD_NAME in files:
        data = json.loads(files[RUN_RECORD_NAME])
        data.update(status=PRUNED, message=message)
        files[RUN_RECORD_NAME] = (json.dumps(data, indent=2, default=str) + "\n").encode()
