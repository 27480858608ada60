"""Generic sizes and GPU names as shorthands for EC2 instance types.

``--size m --gpu t4`` is ``g4dn.xlarge``. The table is deliberately small: it names
the cheapest sensible type for each size of each accelerator, and the README
prints it (``markdown_table``). Whether a type exists in a region is AWS's call,
checked before anything is created (``cml_nb.runner.aws.describe_instance_type``).
"""

from __future__ import annotations

from cml_nb.errors import ConfigError

#: Sizes: ``s`` a small CPU machine, ``m`` one GPU, ``l`` four GPUs, ``xl`` eight GPUs.
SIZES: tuple[str, ...] = ("s", "m", "l", "xl")

#: GPU name -> size -> instance type. ``none`` is CPU only.
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

#: What ``--gpu X`` picks when ``--size`` is not given.
DEFAULT_SIZE = "m"


def resolve_instance_type(
    instance_type: str | None = None, *, size: str | None = None, gpu: str | None = None
) -> str:
    """The EC2 instance type for an explicit type, or for a size and GPU shorthand.

    Args:
        instance_type: an EC2 type such as ``g5.xlarge``; wins over the shorthands.
        size: one of ``SIZES``.
        gpu: a key of ``CATALOGUE`` (case-insensitive), ``none`` for CPU only.

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
    gpu_name = (gpu or "none").lower()
    sizes = CATALOGUE.get(gpu_name)
    if sizes is None:
        raise ConfigError(
            f"unknown --gpu {gpu!r}: choose one of {', '.join(CATALOGUE)} or pass --instance-type"
        )
    size_name = (size or DEFAULT_SIZE).lower()
    if size_name not in sizes:
        raise ConfigError(
            f"--gpu {gpu_name} has no size {size_name!r}: choose one of {', '.join(sizes)} "
            "or pass --instance-type"
        )
    return sizes[size_name]


def markdown_table() -> str:
    """The shorthand table as GitHub-flavoured Markdown (for docs/runners.md)."""
    lines = ["| --gpu | " + " | ".join(f"--size {s}" for s in SIZES) + " |"]
    lines.append("| --- " * (len(SIZES) + 1) + "|")
    for gpu, sizes in CATALOGUE.items():
        cells = [f"`{sizes[s]}`" if s in sizes else "-" for s in SIZES]
        lines.append(f"| {gpu} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
