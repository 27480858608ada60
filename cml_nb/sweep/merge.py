"""Join the sweep folders of CI shards into one sweep, with the same report a single sweep gives."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from cml_nb.errors import ConfigError
from cml_nb.sweep.runner import RunEntry, SweepResult


def merge_sweeps(
    folders: Iterable[str | Path],
    output: str | Path,
    *,
    metric: str | None = None,
    goal: str | None = None,
    report: bool = True,
) -> SweepResult:
    """Copy every shard's runs into ``output`` and write one ``sweep.json`` (and report).

    Args:
        folders: sweep folders written by ``cml-nb sweep --shard K/N`` (or whole sweeps).
        output: the merged sweep folder.
        metric: the ranking metric (default: the shards' own).
        goal: ``max`` or ``min`` (default: the shards' own).
        report: write the comparison report into ``output/report``.

    Returns:
        The merged sweep; runs keep the order of the whole space.
    """
    parts = [SweepResult.read(folder) for folder in folders]
    if not parts:
        raise ConfigError("cml-nb sweep merge needs at least one sweep folder")
    first = parts[0]
    for part in parts[1:]:
        if part.space_id != first.space_id:
            raise ConfigError(
                f"{part.folder} is a shard of another sweep than {first.folder} "
                "(different notebook code or parameter space): merge shards of one sweep only"
            )
    out = Path(output)
    merged = SweepResult(
        folder=str(out),
        notebook=first.notebook,
        kernel=first.kernel,
        swept=first.swept,
        total=first.total,
        space_id=first.space_id,
        metric=metric or first.metric,
        goal=goal or first.goal,
        shards=sorted(s for part in parts for s in part.shards),
    )
    entries: dict[str, tuple[RunEntry, SweepResult]] = {}
    for part in parts:
        for entry in part.runs:
            seen = entries.get(entry.name)
            # A later shard's success replaces an earlier failure of the same run.
            if seen is None or (entry.succeeded and not seen[0].succeeded):
                entries[entry.name] = (entry, part)
    for entry, part in sorted(entries.values(), key=lambda pair: pair[0].index):
        source, target = part.run_folder(entry), merged.run_folder(entry)
        if source.resolve() != target.resolve() and source.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target)
        merged.runs.append(entry)
    missing = merged.total - len(merged.runs)
    if missing and merged.shards:
        counts = {n for _, n in merged.shards}
        have = sorted(k for k, _ in merged.shards)
        raise ConfigError(
            f"{missing} of {merged.total} runs are missing: got shards {have} of {'/'.join(map(str, counts))}; "
            "merge the folders of every shard"
        )
    merged.write()
    if report:
        from cml_nb.sweep.compare import write_report

        write_report(merged)
    return merged
