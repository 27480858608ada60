"""Walk the real click app: every command, and command lines resolved against it.

Shared by the tests that check documentation and generated pipelines against the CLI.
"""

from __future__ import annotations

import importlib
import re
import shlex

import click

from cml_nb.cli import main


def all_commands() -> list[tuple[str, click.Command]]:
    """Every command and sub-command, including `sweep merge` (dispatched by `sweep`)."""
    found: list[tuple[str, click.Command]] = []

    def walk(group: click.Group, prefix: str) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            found.append((prefix + name, command))
            if isinstance(command, click.Group):
                walk(command, prefix + name + " ")
                continue
            if prefix:
                continue
            # A verb that dispatches to a sibling command itself (`sweep` -> `merge`).
            module = importlib.import_module(command.callback.__module__)  # type: ignore[union-attr]
            for value in vars(module).values():
                extra = isinstance(value, click.Command) and value.name
                if extra and all(value is not c for _, c in found):
                    found.append((f"{prefix}{name} {value.name}", value))

    walk(main, "")
    return found


def resolve(words: list[str]) -> click.Context:
    """Parse a cml-nb command line with the real click app; raises click.UsageError."""
    ctx = click.Context(main, info_name="cml-nb")
    command: click.Command = main
    name, rest = "cml-nb", words[1:]
    while isinstance(command, click.Group):
        assert rest, f"{' '.join(words)}: no sub-command"
        name, *rest = rest
        found = command.get_command(ctx, name)
        if found is None:
            raise click.UsageError(f"no command {name!r} in {' '.join(words)}")
        command = found
        ctx = click.Context(command, info_name=name, parent=ctx)
    if name == "sweep" and rest[:1] == ["merge"]:  # `sweep` hands `merge` on itself
        merge = dict(all_commands())["sweep merge"]
        return merge.make_context("merge", rest[1:], parent=ctx.parent)
    return command.make_context(name, rest, parent=ctx.parent)


def shell_commands(markdown: str) -> list[list[str]]:
    """The `cml-nb ...` lines of a Markdown text's ```bash blocks, comments dropped."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and words[0] == "cml-nb":
                    found.append(words)
    return found
