"""TensorBoard event files: PyTorch's ``SummaryWriter``, tensorboardX, Lightning, Keras.

Read with TensorBoard's own ``EventFileLoader`` (the ``tensorboard`` package, no
TensorFlow). Scalars come as ``simple_value`` (PyTorch, tensorboardX) or as a scalar
tensor (TF2/Keras writers); other summaries (images, histograms) are ignored.

Event files are looked for under the kernel's working directory in ``runs/`` (PyTorch's
default), ``logs/`` (Keras' usual), ``lightning_logs/`` (Lightning's default) and every
``--tensorboard DIR``; only those modified during this run are read.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from cml_nb.loggers.base import Found, Point, RunContext, finite, recent_files

DEFAULT_DIRS = ("runs", "logs", "lightning_logs")
EVENT_PATTERN = "events.out.tfevents.*"


class TensorBoardReader:
    """Scalars from the TensorBoard event files this run wrote."""

    name = "tensorboard"
    extra = "tensorboard"
    module = "tensorboard"

    def _files(self, ctx: RunContext) -> list[Path]:
        roots = [ctx.cwd / d for d in DEFAULT_DIRS] + [ctx.resolve(d) for d in ctx.tensorboard_dirs]
        return list(recent_files(ctx, roots, EVENT_PATTERN))

    def present(self, ctx: RunContext) -> str | None:
        """How many event files this run wrote, or None."""
        files = self._files(ctx)
        return f"{len(files)} TensorBoard event file(s)" if files else None

    def read(self, ctx: RunContext) -> Found:
        """Every scalar of every event file this run wrote."""
        by_dir: dict[Path, dict[str, list[Point]]] = defaultdict(lambda: defaultdict(list))
        found = Found()
        for path in self._files(ctx):
            try:
                for tag, point in _scalars(path):
                    by_dir[path.parent][tag].append(point)
            except Exception as exc:  # a truncated or foreign file: say so, read the others
                found.notes.append(f"tensorboard: {path.name} unreadable ({exc})")
        found.series = _named(by_dir, ctx.cwd)
        found.last = {tag: points[-1][1] for tag, points in found.series.items() if points}
        return found


def _scalars(path: Path) -> list[tuple[str, Point]]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    points: list[tuple[str, Point]] = []
    for event in EventFileLoader(str(path)).Load():
        if not event.HasField("summary"):
            continue
        for value in event.summary.value:
            number = _value(value)
            if number is not None:
                points.append((value.tag, (int(event.step), number, float(event.wall_time))))
    return points


def _value(value: Any) -> float | None:
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return finite(value.simple_value)
    if kind == "tensor" and not value.tensor.tensor_shape.dim:  # a scalar tensor (TF2)
        from tensorboard.util import tensor_util

        try:
            return finite(tensor_util.make_ndarray(value.tensor).item())
        except (ValueError, TypeError):  # a string tensor (text summaries)
            return None
    return None


def _named(by_dir: dict[Path, dict[str, list[Point]]], cwd: Path) -> dict[str, list[Point]]:
    """One series per tag; a tag that several run folders log is named ``<folder>/<tag>``.

    Keras writes ``logs/train`` and ``logs/validation``, each with ``epoch_loss``: those
    become ``train/epoch_loss`` and ``validation/epoch_loss``. Folders are named relative
    to their common parent.
    """
    counts: dict[str, int] = defaultdict(int)
    for tags in by_dir.values():
        for tag in tags:
            counts[tag] += 1
    common = _common_parent(list(by_dir)) if len(by_dir) > 1 else None
    series: dict[str, list[Point]] = {}
    for folder, tags in by_dir.items():
        for tag, points in tags.items():
            name = tag
            if counts[tag] > 1 and common is not None:
                name = f"{folder.relative_to(common).as_posix()}/{tag}"
            series.setdefault(name, []).extend(points)
    for points in series.values():
        points.sort(key=lambda p: (p[2], p[0]))  # write order: a resumed run appends later
    return series


def _common_parent(folders: list[Path]) -> Path:
    parts = [f.resolve().parts for f in folders]
    shared = []
    for items in zip(*parts, strict=False):
        if len(set(items)) != 1:
            break
        shared.append(items[0])
    return Path(*shared) if shared else Path("/")
