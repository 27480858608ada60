"""Generic sizes and GPU names as shorthands for each cloud's machine types.

``--size m --gpu t4`` is ``g4dn.xlarge`` on AWS, ``n1-standard-8+nvidia-tesla-t4`` on
GCP (an N1 machine with one T4 attached) and ``Standard_NC4as_T4_v3`` on Azure. The
tables are deliberately small: the cheapest sensible type for each size of each
accelerator, printed in docs/runners.md (``markdown_table``). Whether a type exists
in a region is the cloud's call, checked before anything is created
(``Cloud.describe_instance_type``).
"""

from __future__ import annotations

from cml_nb.errors import ConfigError

#: Sizes: ``s`` a small CPU machine, ``m`` one GPU, ``l`` four GPUs, ``xl`` eight GPUs.
SIZES: tuple[str, ...] = ("s", "m", "l", "xl")

#: AWS: GPU name -> size -> instance type. ``none`` is CPU only.
CATALOGUE: dict[str, dict[str, str]] = {
    "none": {"s": "m6i.large", "m": "m6i.xlarge", "l": "m6i.4xlarge", "xl": "m6i.16xlarge"},
    "t4": {"m": "g4dn.xlarge", "l": "g4dn.12xlarge", "xl": "g4dn.metal"},
    "a10g": {"m": "g5.xlarge", "l": "g5.12xlarge", "xl": "g5.48xlarge"},
    "l4": {"m": "g6.xlarge", "l": "g6.12xlarge", "xl": "g6.48xlarge"},
    "l40s": {"m": "g6e.xlarge", "l": "g6e.12xlarge", "xl": "g6e.48xlarge"},
    "v100": {"xl": "p3dn.24xlarge"},  # the smaller p3 types are being retired
    "a100": {"xl": "p4d.24xlarge"},
    "h100": {"m": "p5.4xlarge", "xl": "p5.48xlarge"},
}

#: GCP: ``machine`` (GPUs built in: G2 L4, A2 A100, A3 H100) or ``machine+accelerator:n``
#: (N1 with attached T4 or V100; compute/docs/gpus/gpu-regions-zones).
GCP_CATALOGUE: dict[str, dict[str, str]] = {
    "none": {"s": "e2-standard-2", "m": "n2-standard-4", "l": "n2-standard-16",
             "xl": "n2-standard-64"},
    "t4": {"m": "n1-standard-8+nvidia-tesla-t4", "l": "n1-standard-32+nvidia-tesla-t4:4"},
    "l4": {"m": "g2-standard-8", "l": "g2-standard-48", "xl": "g2-standard-96"},
    "v100": {"m": "n1-standard-8+nvidia-tesla-v100", "l": "n1-standard-32+nvidia-tesla-v100:4",
             "xl": "n1-standard-64+nvidia-tesla-v100:8"},
    "a100": {"m": "a2-highgpu-1g", "l": "a2-highgpu-4g", "xl": "a2-highgpu-8g"},
    "h100": {"m": "a3-highgpu-1g", "l": "a3-highgpu-4g", "xl": "a3-highgpu-8g"},
}  # fmt: skip

#: Azure: VM sizes (NCasT4_v3, NVadsA10_v5, NC A100 v4, NC/ND H100 v5, NCv3).
AZURE_CATALOGUE: dict[str, dict[str, str]] = {
    "none": {"s": "Standard_D2s_v5", "m": "Standard_D4s_v5", "l": "Standard_D16s_v5",
             "xl": "Standard_D64s_v5"},
    "t4": {"m": "Standard_NC4as_T4_v3", "l": "Standard_NC64as_T4_v3"},
    "a10": {"m": "Standard_NV36ads_A10_v5", "l": "Standard_NV72ads_A10_v5"},
    "v100": {"m": "Standard_NC6s_v3", "l": "Standard_NC24s_v3"},
    "a100": {"m": "Standard_NC24ads_A100_v4", "l": "Standard_NC96ads_A100_v4",
             "xl": "Standard_ND96asr_v4"},
    "h100": {"m": "Standard_NC40ads_H100_v5", "l": "Standard_NC80adis_H100_v5",
             "xl": "Standard_ND96isr_H100_v5"},
}  # fmt: skip

#: Cloud name -> its table (a registry, like the clouds themselves).
CATALOGUES: dict[str, dict[str, dict[str, str]]] = {
    "aws": CATALOGUE,
    "gcp": GCP_CATALOGUE,
    "azure": AZURE_CATALOGUE,
}

#: What other clouds call a GPU: ``--gpu a10`` is AWS's A10G, ``--gpu a10g`` Azure's A10.
ALIASES: dict[str, dict[str, str]] = {"aws": {"a10": "a10g"}, "azure": {"a10g": "a10"}}

#: What ``--gpu X`` picks when ``--size`` is not given.
DEFAULT_SIZE = "m"


def resolve_instance_type(
    instance_type: str | None = None,
    *,
    size: str | None = None,
    gpu: str | None = None,
    cloud: str = "aws",
) -> str:
    """The machine type for an explicit type, or for a size and GPU shorthand.

    Args:
        instance_type: a machine type such as ``g5.xlarge``; wins over the shorthands.
        size: one of ``SIZES``.
        gpu: a key of the cloud's table (case-insensitive), ``none`` for CPU only.
        cloud: whose table (``CATALOGUES``); a cloud without one takes only explicit types.

    Returns:
        The instance type name. Its existence in a region is checked separately.

    Raises:
        ConfigError: both forms were given, neither was, or the shorthand is unknown.
    """
    if instance_type:
        if size or gpu:
            raise ConfigError(
                "give either --instance-type or --size/--gpu, not both: drop one of them"
            )
        return instance_type.strip()
    if not size and not gpu:
        raise ConfigError(
            "no machine chosen: pass --instance-type (e.g. g5.xlarge) or --size/--gpu "
            "(e.g. --size m --gpu t4; see docs/runners.md for the table)"
        )
    table = CATALOGUES.get(cloud)
    if table is None:
        raise ConfigError(f"--cloud {cloud} has no --size/--gpu table: pass --instance-type")
    gpu_name = (gpu or "none").lower()
    gpu_name = ALIASES.get(cloud, {}).get(gpu_name, gpu_name)
    sizes = table.get(gpu_name)
    if sizes is None:
        raise ConfigError(
            f"unknown --gpu {gpu!r}: choose one of {', '.join(table)} or pass --instance-type"
            + (f" (on --cloud {cloud})" if cloud != "aws" else "")
        )
    size_name = (size or DEFAULT_SIZE).lower()
    if size_name not in sizes:
        raise ConfigError(
            f"--gpu {gpu_name} has no size {size_name!r}: choose one of {', '.join(sizes)} "
            "or pass --instance-type"
        )
    return sizes[size_name]


def markdown_table(cloud: str = "aws") -> str:
    """The cloud's shorthand table as GitHub-flavoured Markdown (for docs/runners.md)."""
    lines = ["| --gpu | " + " | ".join(f"--size {s}" for s in SIZES) + " |"]
    lines.append("| --- " * (len(SIZES) + 1) + "|")
    for gpu, sizes in CATALOGUES[cloud].items():
        cells = [f"`{sizes[s]}`" if s in sizes else "-" for s in SIZES]
        lines.append(f"| {gpu} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
