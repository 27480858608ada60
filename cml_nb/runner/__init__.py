"""Cloud GPU runners: launch, register with the forge, stop when idle, never leak.

Modules: ``catalogue`` (size and GPU shorthands), ``script`` (the startup script
with the idle watcher), ``registration`` (GitHub and GitLab runner registration),
``aws`` (EC2 through boto3), ``lifecycle`` (launch, list, stop, cleanup).

Clouds are a registry keyed by name: ``aws`` is built in, others come from the
``cml_nb.runner_clouds`` entry point group (a class taking ``region``).
"""

from __future__ import annotations

import importlib
from typing import Any

from cml_nb.errors import ConfigError

#: Built-in clouds: name -> "module:class" (imported on use, boto3 is heavy).
CLOUDS = {"aws": "cml_nb.runner.aws:Ec2"}


def get_cloud(name: str, region: str, **options: Any) -> Any:
    """The cloud client called ``name`` for ``region``.

    Raises:
        ConfigError: no cloud has that name.
    """
    target = CLOUDS.get(name)
    if target is not None:
        module, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module), attribute)(region, **options)
    from importlib.metadata import entry_points

    for entry in entry_points(group="cml_nb.runner_clouds"):
        if entry.name == name:
            return entry.load()(region, **options)
    raise ConfigError(f"unknown cloud {name!r}: choose one of {', '.join(CLOUDS)}")
