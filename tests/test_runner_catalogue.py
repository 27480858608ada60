"""Instance type shorthands, checked against AWS's own list of instance types."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from runner_fixtures import (
    REGION,
    Aws,
    aws_fixture,  # noqa: F401 (a fixture)
    moto_endpoint,  # noqa: F401 (a fixture)
)

from cml_nb.cli.runner import command as runner_group
from cml_nb.errors import ConfigError
from cml_nb.runner.aws import Ec2
from cml_nb.runner.catalogue import CATALOGUE, markdown_table, resolve_instance_type

DOCS = Path(__file__).parents[1] / "docs" / "runners.md"


def test_issue_example_and_defaults() -> None:
    assert resolve_instance_type(size="m", gpu="t4") == "g4dn.xlarge"
    assert resolve_instance_type(gpu="A10G") == "g5.xlarge"
    assert resolve_instance_type(size="s") == "m6i.large"
    assert resolve_instance_type("p4d.24xlarge") == "p4d.24xlarge"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no machine chosen"),
        ({"gpu": "k80"}, "unknown --gpu 'k80': choose one of none, t4"),
        ({"gpu": "a100", "size": "m"}, "--gpu a100 has no size 'm': choose one of xl"),
        ({"instance_type": "g5.xlarge", "gpu": "t4"}, "not both"),
    ],
)
def test_bad_shorthands_say_what_to_do(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_instance_type(kwargs.pop("instance_type", None), **kwargs)


def test_every_catalogue_type_exists_on_aws_with_the_named_gpu(aws: Aws) -> None:
    ec2 = Ec2(REGION, session=aws.session, endpoint_url=aws.endpoint)
    for gpu, sizes in CATALOGUE.items():
        for instance_type in sizes.values():
            info = ec2.describe_instance_type(instance_type)
            if gpu == "none":
                assert info.gpus == 0, instance_type
            else:
                assert gpu in info.gpu_name.lower().replace(" ", ""), (instance_type, info)
    with pytest.raises(ConfigError, match="unknown instance type 'g5.xlargee'"):
        ec2.describe_instance_type("g5.xlargee")


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_docs_show_the_current_table(cloud: str) -> None:
    assert markdown_table(cloud) in DOCS.read_text()


@pytest.mark.parametrize(
    ("cloud", "gpu", "expected"),
    [
        ("gcp", "t4", "n1-standard-8+nvidia-tesla-t4"),
        ("gcp", "l4", "g2-standard-8"),
        ("azure", "t4", "Standard_NC4as_T4_v3"),
        ("azure", "a10g", "Standard_NV36ads_A10_v5"),  # AWS's name for it works too
        ("aws", "a10", "g5.xlarge"),
    ],
)
def test_each_cloud_has_its_own_shorthands(cloud: str, gpu: str, expected: str) -> None:
    assert resolve_instance_type(gpu=gpu, cloud=cloud) == expected


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), flags=re.S)


def test_docs_examples_parse_and_use_real_options() -> None:
    commands: list[str] = []
    for block in _blocks("yaml"):
        data = yaml.safe_load(block)
        assert isinstance(data, dict)
        commands += re.findall(r"cml-nb runner [^\n\"]+(?:\n\s+--[^\n]+)*", block)
    for block in _blocks("console"):
        commands += [
            line[2:].replace("\\\n", " ")
            for line in re.findall(r"^\$ cml-nb runner .*?(?:\\\n.*?)*$", block, flags=re.M)
        ]
    assert len(commands) >= 6
    for text in commands:
        text = re.sub(r"\$\{\{[^}]*\}\}|\$\w+", "X", " ".join(text.split()))
        words = shlex.split(text)[2:]  # drop "cml-nb runner"
        sub = runner_group.commands[words[0]]
        sub.make_context(words[0], words[1:])  # raises on an unknown option or bad value
