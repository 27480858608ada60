"""Extract the GitHub REST operations cml-nb uses from @octokit/openapi.

Usage (from the repository root)::

    npm pack @octokit/openapi@23.0.2            # or any later version
    tar xzf octokit-openapi-*.tgz
    python tests/openapi/extract.py package/generated/api.github.com.json

writes ``tests/openapi/github-subset.json``: the listed operations plus every
component they reference, so tests validate the forge emulator's GitHub traffic
against GitHub's own description without shipping the 13 MB original.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: (method, path template) of every GitHub operation cml-nb or the emulator serves.
OPERATIONS: list[tuple[str, str]] = [
    ("get", "/user"),
    ("get", "/repos/{owner}/{repo}"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("patch", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("delete", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("get", "/repos/{owner}/{repo}/pulls"),
    ("post", "/repos/{owner}/{repo}/pulls"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("patch", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("get", "/repos/{owner}/{repo}/commits/{ref}"),
    ("get", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls"),
    ("get", "/repos/{owner}/{repo}/commits/{commit_sha}/comments"),
    ("post", "/repos/{owner}/{repo}/commits/{commit_sha}/comments"),
    ("get", "/repos/{owner}/{repo}/comments"),
    ("patch", "/repos/{owner}/{repo}/comments/{comment_id}"),
    ("delete", "/repos/{owner}/{repo}/comments/{comment_id}"),
    ("post", "/repos/{owner}/{repo}/check-runs"),
    ("get", "/repos/{owner}/{repo}/commits/{ref}/check-runs"),
    ("post", "/repos/{owner}/{repo}/statuses/{sha}"),
    ("get", "/repos/{owner}/{repo}/commits/{ref}/statuses"),
    ("post", "/repos/{owner}/{repo}/git/blobs"),
    ("get", "/repos/{owner}/{repo}/git/blobs/{file_sha}"),
    ("post", "/repos/{owner}/{repo}/git/trees"),
    ("get", "/repos/{owner}/{repo}/git/trees/{tree_sha}"),
    ("post", "/repos/{owner}/{repo}/git/commits"),
    ("get", "/repos/{owner}/{repo}/git/commits/{commit_sha}"),
    ("get", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("post", "/repos/{owner}/{repo}/git/refs"),
    ("patch", "/repos/{owner}/{repo}/git/refs/{ref}"),
    ("get", "/repos/{owner}/{repo}/contents/{path}"),
    ("get", "/repos/{owner}/{repo}/branches/{branch}"),
    ("post", "/repos/{owner}/{repo}/actions/runners/registration-token"),
    ("post", "/repos/{owner}/{repo}/actions/runners/generate-jitconfig"),
    ("get", "/repos/{owner}/{repo}/actions/runners"),
    ("delete", "/repos/{owner}/{repo}/actions/runners/{runner_id}"),
]


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _lookup(spec: dict[str, Any], ref: str) -> Any:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def extract(spec: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``spec`` holding OPERATIONS and their referenced components."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path in OPERATIONS:
        operation = spec["paths"][path][method]
        paths.setdefault(path, {})[method] = operation
        if "parameters" in spec["paths"][path]:
            paths[path]["parameters"] = spec["paths"][path]["parameters"]
    subset: dict[str, Any] = {
        "openapi": spec["openapi"],
        "info": {**spec["info"], "x-cml-nb-subset": "extracted by tests/openapi/extract.py"},
        "paths": paths,
        "components": {},
    }
    pending: set[str] = set()
    _refs(paths, pending)
    done: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in done:
            continue
        done.add(ref)
        _, _, kind, name = ref.split("/", 3)
        node = _lookup(spec, ref)
        subset["components"].setdefault(kind, {})[name] = node
        _refs(node, pending)
    return subset


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else Path("package/generated/api.github.com.json")
    spec = json.loads(source.read_text())
    subset = extract(spec)
    out = HERE / "github-subset.json"
    out.write_text(json.dumps(subset, indent=1, sort_keys=True) + "\n")
    print(
        f"{out}: {len(OPERATIONS)} operations, {sum(map(len, subset['components'].values()))} components"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
