"""How a generated launch job logs in to each GPU runner cloud, per forge.

One entry per ``--gpu-runner`` cloud (a registry, like ``cml_nb.runner.clouds``): AWS
with an IAM user's keys, Google Cloud with workload identity federation (OIDC, no key),
Azure with OIDC federated credentials. The builders in ``github`` and ``gitlab`` read
the entry; they hold no per-cloud code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cml_nb.pipelines import RUNNERS_URL


@dataclass(frozen=True)
class CloudLogin:
    """What the launch job needs for one cloud.

    Attributes:
        extra: the cml-nb extra with the cloud's SDK (``None``: none needed).
        region: the default region of the runner.
        launch_args: more ``cml-nb runner launch`` arguments (may hold CI expressions).
        github_steps: steps before the launch step (the login action).
        github_env: the launch step's environment (``{region}`` is filled in).
        github_oidc: the job asks GitHub for an OIDC token (``id-token: write``).
        gitlab_id_tokens: the launch job's ``id_tokens`` (GitLab's OIDC tokens).
        gitlab_script: lines before the launch (writing the OIDC token to a file).
        gitlab_variables: the launch job's variables (``{region}`` is filled in).
        secrets: ``(name, why)`` of what the user stores in the forge's settings.
    """

    extra: str | None
    region: str
    launch_args: tuple[str, ...] = ()
    github_steps: tuple[dict[str, Any], ...] = ()
    github_env: dict[str, str] = field(default_factory=dict)
    github_oidc: bool = False
    gitlab_id_tokens: dict[str, Any] = field(default_factory=dict)
    gitlab_script: tuple[str, ...] = ()
    gitlab_variables: dict[str, str] = field(default_factory=dict)
    secrets: tuple[tuple[str, str], ...] = ()


#: ``--gpu-runner`` name -> how its launch job logs in.
LOGINS: dict[str, CloudLogin] = {
    "aws": CloudLogin(
        extra=None,
        region="us-east-1",
        github_env={
            "AWS_ACCESS_KEY_ID": "${{ secrets.AWS_ACCESS_KEY_ID }}",
            "AWS_SECRET_ACCESS_KEY": "${{ secrets.AWS_SECRET_ACCESS_KEY }}",
            "AWS_DEFAULT_REGION": "{region}",
        },
        gitlab_variables={"AWS_DEFAULT_REGION": "{region}"},
        secrets=(
            (
                "AWS_ACCESS_KEY_ID",
                f"the access key of an IAM user with the policy in {RUNNERS_URL}",
            ),
            ("AWS_SECRET_ACCESS_KEY", "that IAM user's secret key"),
        ),
    ),
    "gcp": CloudLogin(
        extra="gcp",
        region="us-central1",
        launch_args=("--region", "{region}"),
        # github.com/google-github-actions/auth: workload identity federation, no key;
        # it writes the credentials file Application Default Credentials reads.
        github_steps=(
            {
                "uses": "google-github-actions/auth@v2",
                "with": {
                    "workload_identity_provider": "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}",
                    "service_account": "${{ vars.GCP_SERVICE_ACCOUNT }}",
                },
            },
        ),
        github_env={"GOOGLE_CLOUD_PROJECT": "${{ vars.GCP_PROJECT }}"},
        github_oidc=True,
        # docs.gitlab.com/ci/cloud_services/google_cloud/: the ID token goes to a file
        # that the credential configuration (a File variable) names.
        gitlab_id_tokens={"GCP_ID_TOKEN": {"aud": "$GCP_WORKLOAD_IDENTITY_AUDIENCE"}},
        gitlab_script=('echo "$GCP_ID_TOKEN" > /tmp/gcp-oidc-token',),
        secrets=(
            ("GCP_PROJECT", "the project the runners run in"),
            (
                "GCP_WORKLOAD_IDENTITY_PROVIDER",
                "the workload identity provider trusting this repository "
                "(projects/N/locations/global/workloadIdentityPools/P/providers/R); on GitLab "
                "GCP_WORKLOAD_IDENTITY_AUDIENCE, the same with //iam.googleapis.com/ first, "
                "and GOOGLE_APPLICATION_CREDENTIALS, a File variable from 'gcloud iam "
                "workload-identity-pools create-cred-config --credential-source-file "
                "/tmp/gcp-oidc-token'",
            ),
            (
                "GCP_SERVICE_ACCOUNT",
                f"the service account it impersonates, with roles/compute.instanceAdmin.v1 "
                f"(see {RUNNERS_URL})",
            ),
        ),
    ),
    "azure": CloudLogin(
        extra="azure",
        region="eastus",
        launch_args=("--region", "{region}", "--resource-group", "$AZURE_RESOURCE_GROUP"),
        # github.com/Azure/login: OIDC federated credentials; DefaultAzureCredential then
        # uses the Azure CLI's login.
        github_steps=(
            {
                "uses": "azure/login@v2",
                "with": {
                    "client-id": "${{ vars.AZURE_CLIENT_ID }}",
                    "tenant-id": "${{ vars.AZURE_TENANT_ID }}",
                    "subscription-id": "${{ vars.AZURE_SUBSCRIPTION_ID }}",
                },
            },
        ),
        github_env={
            "AZURE_SUBSCRIPTION_ID": "${{ vars.AZURE_SUBSCRIPTION_ID }}",
            "AZURE_RESOURCE_GROUP": "${{ vars.AZURE_RESOURCE_GROUP }}",
        },
        github_oidc=True,
        # learn.microsoft.com/entra/workload-id/workload-identity-federation: the ID token
        # file is what WorkloadIdentityCredential (in DefaultAzureCredential) reads.
        gitlab_id_tokens={"AZURE_ID_TOKEN": {"aud": "api://AzureADTokenExchange"}},
        gitlab_script=('echo "$AZURE_ID_TOKEN" > /tmp/azure-oidc-token',),
        gitlab_variables={"AZURE_FEDERATED_TOKEN_FILE": "/tmp/azure-oidc-token"},
        secrets=(
            (
                "AZURE_CLIENT_ID",
                "the app registration with a federated credential for this repository",
            ),
            ("AZURE_TENANT_ID", "its tenant"),
            ("AZURE_SUBSCRIPTION_ID", "the subscription the runners run in"),
            (
                "AZURE_RESOURCE_GROUP",
                f"an existing resource group where the app has Virtual Machine and Network "
                f"Contributor (see {RUNNERS_URL})",
            ),
        ),
    ),
}


def with_extra(install: str, extra: str) -> str:
    """``cml-nb==1.2`` -> ``cml-nb[gcp]==1.2``; another requirement form is kept as is."""
    match = re.fullmatch(r"cml-nb(\[[^\]]*\])?(.*)", install.strip())
    if not match:
        return install
    extras = [e for e in (match[1] or "[]")[1:-1].split(",") if e] + [extra]
    return f"cml-nb[{','.join(extras)}]{match[2]}"


def fill(value: str, region: str) -> str:
    """``value`` with ``{region}`` replaced (other text, CI expressions too, unchanged)."""
    return value.replace("{region}", region)
