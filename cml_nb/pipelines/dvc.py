"""DVC in the generated pipelines: ``dvc pull`` before the run, the remote's credentials.

A repository uses DVC when it has a ``.dvc/`` folder (``dvc init``). Its default remote
(``[core] remote`` in ``.dvc/config``, else the only one) says which DVC extra to
install (``dvc[s3]``) and which credentials the pull needs, as CI secrets; DVC and the
storage SDKs read them from the environment
(https://dvc.org/doc/user-guide/data-management/remote-storage). ``params.yaml``, DVC's
parameters file, is passed to ``cml-nb run -f`` when the notebook declares its keys.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

#: DVC's parameters file (https://dvc.org/doc/command-reference/params).
PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class RemoteKind:
    """What pulling from one kind of DVC remote needs in CI.

    Attributes:
        extra: the ``dvc[...]`` extra with the storage SDK ("" for none).
        secrets: ``(name, why)`` of each environment variable the pull reads.
    """

    extra: str
    secrets: tuple[tuple[str, str], ...] = ()


#: By URL scheme. Variables are those each SDK reads by itself (boto3, google-auth,
#: adlfs, pydrive2 via DVC's gdrive_use_service_account).
REMOTES: dict[str, RemoteKind] = {
    "s3": RemoteKind(
        "s3",
        (
            ("AWS_ACCESS_KEY_ID", "the access key of an IAM user that can read the DVC remote"),
            ("AWS_SECRET_ACCESS_KEY", "that IAM user's secret key"),
        ),
    ),
    "gs": RemoteKind(
        "gs",
        (
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                "the path of a service-account key file "
                "(write the key from a secret to a file first) that can read the bucket",
            ),
        ),
    ),  # fmt: skip
    "azure": RemoteKind(
        "azure",
        (("AZURE_STORAGE_CONNECTION_STRING", "a connection string of the storage account"),),
    ),
    "gdrive": RemoteKind(
        "gdrive",
        (
            (
                "GDRIVE_CREDENTIALS_DATA",
                "the JSON key of a service account the folder is shared "
                "with (dvc remote modify REMOTE gdrive_use_service_account true)",
            ),
        ),
    ),  # fmt: skip
    "ssh": RemoteKind("ssh"),
    "http": RemoteKind("http"),
    "https": RemoteKind("http"),
    "webdav": RemoteKind("webdav"),
}


@dataclass(frozen=True)
class DvcProject:
    """What ``cml-nb init`` learnt from the repository's DVC set-up.

    Attributes:
        remote: the default remote's URL scheme (``s3``), "" when it has none or a local one.
        kind: what that remote needs (None when unknown or local).
        parameters_file: ``params.yaml`` when the notebook declares all its keys.
        notes: what to tell the user (a params file that was not passed on, no remote).
    """

    remote: str = ""
    kind: RemoteKind | None = None
    parameters_file: str | None = None
    notes: tuple[str, ...] = ()


def remote_scheme(root: Path) -> str:
    """The URL scheme of the default DVC remote, "" when none is configured."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        # .dvc/config is committed; config.local (credentials) is not, and is not read.
        parser.read(root / ".dvc" / "config", encoding="utf-8")
    except configparser.Error:
        return ""
    default = parser.get("core", "remote", fallback="").strip()
    # DVC writes sections as ['remote "storage"'], quotes included.
    remotes = {
        s.split('"')[1]: parser.get(s, "url", fallback="")
        for s in parser.sections()
        if s.strip("'").startswith("remote ") and s.count('"') == 2
    }
    url = remotes.get(default) or (next(iter(remotes.values())) if len(remotes) == 1 else "")
    return url.split("://", 1)[0].lower() if "://" in url else ""


def detect(root: Path, notebook: str) -> DvcProject | None:
    """The repository's DVC set-up, or None when it does not use DVC."""
    if not (root / ".dvc").is_dir():
        return None
    notes: list[str] = []
    scheme = remote_scheme(root)
    kind = REMOTES.get(scheme)
    if not scheme:
        notes.append("DVC has no remote URL in .dvc/config: `dvc pull` needs one "
                     "(dvc remote add -d storage s3://bucket/path), committed")  # fmt: skip
    elif kind is None:
        notes.append(f"DVC remote {scheme}:// is not one cml-nb knows: install its "
                     "dvc extra in the pipeline and add its credentials as secrets")  # fmt: skip
    parameters_file = None
    if (root / PARAMS_FILE).is_file():
        unknown = _undeclared(root / PARAMS_FILE, root / notebook)
        if unknown is None or unknown:
            listed = f" ({', '.join(unknown)} are not in its parameters cell)" if unknown else ""
            notes.append(f"{PARAMS_FILE} is not passed to the notebook{listed}: add "
                         f"`-f {PARAMS_FILE} --allow-unknown` to the run if it should be")  # fmt: skip
        else:
            parameters_file = PARAMS_FILE
    return DvcProject(scheme, kind, parameters_file, tuple(notes))


def _undeclared(params: Path, notebook: Path) -> list[str] | None:
    """Keys of ``params`` the notebook's parameters cell lacks; None when unreadable."""
    import json

    import yaml

    from cml_nb.errors import CmlNbError
    from cml_nb.parameters import declared

    try:
        values = yaml.safe_load(params.read_text(encoding="utf-8"))
        nb = json.loads(notebook.read_text(encoding="utf-8"))
        names = declared(nb) or {}
    except (OSError, ValueError, yaml.YAMLError, CmlNbError):
        return None
    if not isinstance(values, dict):
        return None
    return [str(k) for k in values if k not in names]
