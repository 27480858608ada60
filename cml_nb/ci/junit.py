"""JUnit XML of runs: one test suite per notebook run, one test case per executed code cell.

The shape is the one GitLab's unit test reports read
(docs.gitlab.com/ci/testing/unit_test_reports/: ``testsuites > testsuite > testcase``
with ``name``, ``classname``, ``file``, ``time`` and a ``failure`` child carrying
``message`` and ``type``) and that GitHub test-report actions (dorny/test-reporter,
mikepenz/action-junit-report) parse. Case names are ``cell N: first source line``,
N counted as the author numbers cells; tracebacks carry no colour codes; every
text is masked like the report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from cml_nb.errors import StorageError
from cml_nb.notebook import INJECTED_TAG, cell_numbers, joined, strip_ansi
from cml_nb.records import FAILED, RunRecord
from cml_nb.secrets import Scrubber
from cml_nb.sweep.result import PRUNED

_NAME_CHARS = 80
# Characters XML 1.0 cannot hold at all (a notebook may print them).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_RAN = ("completed", "failed", "running")


def _text(value: str, scrubber: Scrubber) -> str:
    return _NOT_XML.sub("\ufffd", scrubber.scrub(strip_ansi(value)))


def _first_line(source: str) -> str:
    line = next((s.strip() for s in source.splitlines() if s.strip()), "(empty)")
    return line if len(line) <= _NAME_CHARS else line[: _NAME_CHARS - 1] + "…"


def _load(record: RunRecord) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(record.output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("cells"), list) else None


def _executed(cell: dict[str, Any]) -> bool:
    status = (cell.get("metadata", {}) or {}).get("papermill", {}).get("status")
    return cell.get("execution_count") is not None or status in _RAN


def suite(record: RunRecord, name: str | None = None, secrets: Iterable[str] = ()) -> ET.Element:
    """The ``<testsuite>`` of one run, read from its record and executed notebook."""
    scrubber = Scrubber(secrets, include_env=True)
    label = _text(name or record.notebook, scrubber)
    element = ET.Element("testsuite", name=label, file=_text(record.notebook, scrubber))
    if record.started_at:
        element.set("timestamp", record.started_at)
    nb = _load(record)
    cases, failures, total, skipped = 0, 0, 0.0, 0
    cells = nb.get("cells", []) if nb else []
    numbers = cell_numbers(nb) if nb else {}
    timings = {c.cell_index: c.duration for c in record.cells}
    failing = record.error.cell_index if record.error is not None else None
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code" or not (_executed(cell) or index == failing):
            continue
        tags = (cell.get("metadata", {}) or {}).get("tags", ()) or ()
        where = "parameters (injected)" if INJECTED_TAG in tags else f"cell {numbers.get(index)}"
        seconds = float(timings.get(index) or 0.0)
        case = ET.SubElement(
            element, "testcase",
            name=_text(f"{where}: {_first_line(joined(cell.get('source')))}", scrubber),
            classname=label, file=_text(record.notebook, scrubber), time=f"{seconds:.3f}",
        )  # fmt: skip
        cases, total = cases + 1, total + seconds
        if index == failing and record.status == PRUNED:  # stopped on purpose by a search
            ET.SubElement(case, "skipped", message=_text(record.message, scrubber))
            skipped += 1
        elif index == failing and record.error is not None:
            failures += 1
            err = record.error
            message = f"{err.ename}: {err.evalue}" if err.evalue else (record.message or err.ename)
            kind = err.ename
            if record.status != FAILED:  # a timeout interrupts the kernel: not the cell's error
                message, kind = record.message or record.status, record.status
            failure = ET.SubElement(
                case, "failure", message=_text(message, scrubber), type=_text(kind, scrubber)
            )
            failure.text = _text("\n".join(err.traceback) or record.message, scrubber)
    if nb is None or (record.error is not None and failing not in range(len(cells))):
        # No notebook, or a failure outside any cell (the kernel never started).
        case = ET.SubElement(element, "testcase", name="run", classname=label, time="0.000")
        cases += 1
        if not record.succeeded:
            failures += 1
            failure = ET.SubElement(
                case, "failure", message=_text(record.message or record.status, scrubber),
                type=record.status,
            )  # fmt: skip
    element.set("tests", str(cases))
    element.set("failures", str(failures))
    element.set("errors", "0")
    element.set("skipped", str(skipped))
    element.set("time", f"{record.duration or total:.3f}")
    return element


def document(
    records: Sequence[RunRecord],
    names: Sequence[str] | None = None,
    secrets: Iterable[str] = (),
) -> ET.Element:
    """The ``<testsuites>`` root of several runs (a sweep: one suite per configuration)."""
    root = ET.Element("testsuites", name="cml-nb")
    keep = list(secrets)
    for i, record in enumerate(records):
        root.append(suite(record, names[i] if names else None, keep))
    for attribute in ("tests", "failures", "errors"):
        root.set(attribute, str(sum(int(s.get(attribute, "0")) for s in root)))
    root.set("time", f"{sum(float(s.get('time', '0')) for s in root):.3f}")
    return root


def write(
    path: Path,
    records: Sequence[RunRecord],
    names: Sequence[str] | None = None,
    secrets: Iterable[str] = (),
) -> Path:
    """Write the JUnit XML of ``records`` to ``path``.

    Raises:
        StorageError: the file cannot be written.
    """
    tree = ET.ElementTree(document(records, names, secrets))
    ET.indent(tree)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tree.write(path, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise StorageError(f"cannot write --junit {path}: {exc.strerror or exc}") from exc
    return path


def sweep_records(folder: Path, runs: Iterable[Any]) -> tuple[list[RunRecord], list[str]]:
    """The record of each run of a sweep that has one, and its suite name."""
    from cml_nb.sweep.result import RUNS_DIR

    records, names = [], []
    for entry in runs:
        path = Path(folder) / RUNS_DIR / entry.name
        try:
            record = RunRecord.read(path)
        except (OSError, ValueError, TypeError):
            continue  # not run (the sweep stopped first): nothing executed to report
        beside = path / Path(record.output).name  # the copy in the run folder (cached runs too)
        if beside.is_file():
            record.output = str(beside)
        records.append(record)
        names.append(f"{Path(record.notebook).name} [{entry.name}]")
    return records, names
