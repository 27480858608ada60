"""Cloud GPU runners: launch, register with the forge, stop when idle, never leak.

Modules: ``clouds`` (the cloud interface, shared records and the registry),
``catalogue`` (size and GPU shorthands per cloud), ``script`` (the startup script with
the idle watcher), ``registration`` (GitHub and GitLab runner registration), ``aws``
(EC2 through boto3), ``gcp`` (Compute Engine through google-cloud-compute), ``azure``
(virtual machines through the azure-mgmt SDKs), ``lifecycle`` (launch, list, stop,
cleanup).

Clouds are a registry keyed by name (``clouds.CLOUDS``): ``aws``, ``gcp`` and ``azure``
are built in, others come from the ``cml_nb.runner_clouds`` entry point group (a class
with ``from_options(region, **options)``).
"""

from __future__ import annotations

from cml_nb.runner.clouds import CLOUDS, cloud_class, get_cloud

__all__ = ["CLOUDS", "cloud_class", "get_cloud"]
