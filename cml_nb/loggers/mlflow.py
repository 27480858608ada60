"""MLflow: the runs the notebook started during this run, read through ``MlflowClient``.

The tracking store is the one the notebook used: ``MLFLOW_TRACKING_URI`` as the kernel
inherited it (a tracking server, ``sqlite:///...``, or a ``file:`` store), else a local
``mlflow.db`` (MLflow 3's default store) or ``mlruns/`` folder in the kernel's working
directory that this run modified. A relative ``sqlite:///mlflow.db`` is relative to
the kernel's working directory, as it was for the notebook. Only runs whose
``start_time`` is at or after the run's start are read (``--mlflow-experiment NAME``
narrows them to one experiment), so earlier runs in the same store never count.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cml_nb.loggers.base import MTIME_SLACK, Found, Point, RunContext, finite

URI_VARIABLE = "MLFLOW_TRACKING_URI"
DB_NAME, FILE_STORE = "mlflow.db", "mlruns"
#: MLflow retries a tracking server 7 times with backoff (minutes when it is down); reading
#: after the run tries less, unless the user set these (mlflow.environment_variables).
BOUNDED_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
#: search_runs page size; one notebook starts a handful of runs, a sweep a few hundred.
MAX_RUNS = 1000


class MlflowReader:
    """Metric histories of the MLflow runs this run started."""

    name = "mlflow"
    extra = "mlflow"
    module = "mlflow"

    def tracking_uri(self, ctx: RunContext) -> str | None:
        """The store the notebook logged to, or None when it used none."""
        uri = ctx.env.get(URI_VARIABLE, "").strip()
        if uri:
            return _absolute(uri, ctx.cwd)
        db = ctx.cwd / DB_NAME
        if db.is_file() and ctx.written_during_run(db):
            return f"sqlite:///{db.resolve()}"
        store = ctx.cwd / FILE_STORE
        if store.is_dir() and _touched(ctx, store):
            return store.resolve().as_uri()
        return None

    def present(self, ctx: RunContext) -> str | None:
        """The tracking store this run wrote to (credentials hidden), or None."""
        uri = self.tracking_uri(ctx)
        return f"MLflow store {shown_uri(uri)}" if uri else None

    def read(self, ctx: RunContext) -> Found:
        """The metric history of each run started since the run began."""
        import logging

        from mlflow import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial tables..."
        for name, value in BOUNDED_HTTP.items():  # a dead server: a note in seconds, not minutes
            os.environ.setdefault(name, value)
        uri = self.tracking_uri(ctx) or ""
        found = Found()
        client = MlflowClient(tracking_uri=uri)
        if ctx.mlflow_experiment:
            experiment = client.get_experiment_by_name(ctx.mlflow_experiment)
            if experiment is None:
                found.notes.append(
                    f"mlflow: no experiment named {ctx.mlflow_experiment!r} in "
                    f"{shown_uri(uri)}: check --mlflow-experiment"
                )
                return found
            ids = [experiment.experiment_id]
        else:
            ids = [e.experiment_id for e in client.search_experiments()]
        if not ids:
            return found
        since = int((ctx.started - MTIME_SLACK) * 1000)
        runs = client.search_runs(
            ids,
            filter_string=f"attributes.start_time >= {since}",
            max_results=MAX_RUNS,
            order_by=["attributes.start_time ASC"],
        )
        several = len(runs) > 1
        for run in runs:
            prefix = f"{run.info.run_name or run.info.run_id[:8]}/" if several else ""
            for key in sorted(run.data.metrics):
                points = _history(client, run.info.run_id, key)
                if points:
                    found.series[prefix + key] = points
                    found.last[prefix + key] = points[-1][1]
        return found


def _history(client: Any, run_id: str, key: str) -> list[Point]:
    points: list[Point] = []
    for metric in client.get_metric_history(run_id, key):
        value = finite(metric.value)
        if value is not None:  # MLflow's timestamps are milliseconds since the epoch
            points.append((int(metric.step), value, metric.timestamp / 1000))
    points.sort(key=lambda p: (p[0], p[2] or 0.0))
    return points


def _absolute(uri: str, cwd: Path) -> str:
    """A relative ``sqlite:///x.db`` or plain path, made absolute against ``cwd``."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(cwd / uri.removeprefix('sqlite:///')).resolve()}"
    if "://" not in uri and not uri.startswith("file:"):
        return (cwd / uri).resolve().as_uri()
    return uri


def shown_uri(uri: str) -> str:
    """``uri`` without user, password or query (a server URI may carry credentials)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return uri.split("?", 1)[0]


def _touched(ctx: RunContext, store: Path) -> bool:
    # The file store writes meta.yaml per run and a file per metric: any recent one will do.
    if ctx.written_during_run(store):
        return True
    return any(ctx.written_during_run(p) for p in store.glob("*/*/meta.yaml"))
