"""YAML output for pipeline files: key order kept, scripts as literal blocks, ``on:`` bare."""

from __future__ import annotations

import re
from typing import Any


def dump(data: dict[str, Any], header: str = "") -> str:
    """``data`` as block-style YAML, after ``header`` lines written as ``#`` comments.

    Args:
        data: the document; dictionaries keep their insertion order.
        header: text put first, each line commented.

    Returns:
        The YAML text, ending with a newline.
    """
    import yaml

    class Dumper(yaml.SafeDumper):
        """Indents list items under their key, as GitHub's and GitLab's examples do."""

        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            super().increase_indent(flow, False)

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # Multi-line shell scripts read best as literal blocks.
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    def empty(dumper: yaml.SafeDumper, value: None) -> yaml.ScalarNode:
        # `pull_request:` rather than `pull_request: null`.
        return dumper.represent_scalar("tag:yaml.org,2002:null", "")

    Dumper.add_representer(str, text)
    Dumper.add_representer(type(None), empty)
    body = yaml.dump(data, Dumper=Dumper, sort_keys=False, width=1000, allow_unicode=True)
    # PyYAML quotes the key `on` (a YAML 1.1 boolean); GitHub and YAML 1.2 read it bare.
    body = re.sub(r"^'on':", "on:", body, flags=re.MULTILINE)
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comment + ("\n" if comment else "") + body
