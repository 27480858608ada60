"""Runner registration on the forges: tokens to register with, runners to list and remove.

GitHub (PyGithub and its requester): a just-in-time runner config for single-job
runners (single use, the runner exists on GitHub at once), otherwise a repository
or organisation registration token (valid one hour). GitLab (python-gitlab):
``POST /user/runners`` creates the runner and returns its authentication token,
which the instance resets as soon as it registers (so the copy in its user-data is
revoked; see ``startup.sh``).
Both clients retry rate limits and transient server errors with backoff.

Registry: ``FORGES`` maps a name to its class; third-party forges come from the
``cml_nb.runner_forges`` entry point group.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

from cml_nb.errors import (
    ConfigError,
    ForgeAuthError,
    ForgeError,
    RateLimitedError,
    TargetNotFoundError,
)
from cml_nb.secrets import Scrubber


@dataclass(frozen=True)
class Registration:
    """What the runner agent registers with.

    Attributes:
        kind: ``jit`` (GitHub JIT config), ``token`` (GitHub registration token) or
            ``gitlab`` (a GitLab runner authentication token).
        secret: the token or config; never print it.
        url: where the agent registers (``config.sh --url`` or the GitLab instance).
        runner_id: the forge's id when the runner already exists on the forge.
    """

    kind: str
    secret: str = field(repr=False)
    url: str
    runner_id: int | None = None


@dataclass(frozen=True)
class ForgeRunner:
    """A self-hosted runner as the forge sees it.

    ``busy`` is True when the forge could not say whether a job runs (``busy_unknown``):
    stopping such a runner could kill a job, so it counts as busy.
    """

    id: int
    name: str
    online: bool
    busy: bool
    labels: tuple[str, ...] = ()
    busy_unknown: bool = False


class RunnerForge(Protocol):
    """What runner management needs from a forge."""

    name: str
    repository: str

    def register(self, name: str, labels: list[str], *, single: bool) -> Registration:
        """A registration for a new runner called ``name`` with these labels."""
        ...

    def runners(self) -> list[ForgeRunner]:
        """Every self-hosted runner of the repository (or organisation)."""
        ...

    def remove(self, runner_id: int) -> None:
        """Unregister a runner; a runner already gone is not an error."""
        ...


def _token(explicit: str | None, names: tuple[str, ...], forge: str) -> str:
    for value in (explicit, *(os.environ.get(n) for n in names)):
        if value:
            return value
    raise ForgeAuthError(
        f"no {forge} token: export {names[0]} (a token that may administer the repository's "
        "runners), or pass --token"
    )


class GitHubRunners:
    """Runners of a GitHub repository (``owner/repo``) or organisation (``org``).

    Args:
        repository: ``owner/repo``, or an organisation name for organisation runners.
        token: defaults to ``GITHUB_TOKEN``, ``GH_TOKEN`` or ``REPO_TOKEN``; it needs
            the repository's "Administration: write" (or "Self-hosted runners" on an
            organisation) permission; the workflow ``GITHUB_TOKEN`` does not have it.
        api_url: the REST API root (default ``GITHUB_API_URL`` or api.github.com).
    """

    name = "github"

    def __init__(
        self, repository: str, *, token: str | None = None, api_url: str | None = None
    ) -> None:
        from github import Auth, Github, GithubRetry

        self.repository = repository.strip("/")
        self.api_url = api_url or os.environ.get("GITHUB_API_URL") or "https://api.github.com"
        self.api_url = self.api_url.rstrip("/")
        secret = _token(token, ("GITHUB_TOKEN", "GH_TOKEN", "REPO_TOKEN"), "GitHub")
        self.scrubber = Scrubber([secret])
        self.client = Github(
            auth=Auth.Token(secret),
            base_url=self.api_url,
            retry=GithubRetry(total=6, backoff_factor=0.5),
            timeout=30,
        )
        self.is_org = "/" not in self.repository
        self._path = ("/orgs/" if self.is_org else "/repos/") + self.repository

    @property
    def web_url(self) -> str:
        """Where ``config.sh --url`` points: the repository or organisation page."""
        from cml_nb.forge.hosts import web_url_for_api  # api.<sub>.ghe.com -> <sub>.ghe.com

        return f"{web_url_for_api(self.api_url)}/{self.repository}"

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        from github import GithubException, RateLimitExceededException

        try:
            yield
        except RateLimitExceededException as exc:
            raise RateLimitedError(
                f"{doing}: GitHub kept rate-limiting after every retry: try again later"
            ) from exc
        except GithubException as exc:
            raise _forge_error("GitHub", doing, exc.status, self.scrubber, self.repository) from exc

    def _request(self, verb: str, path: str, body: dict[str, Any] | None = None) -> Any:
        _, data = self.client.requester.requestJsonAndCheck(
            verb, self.api_url + self._path + path, input=body
        )
        return data

    def register(self, name: str, labels: list[str], *, single: bool) -> Registration:
        """A JIT config when ``single`` (single use), else a registration token."""
        with self._errors(f"getting a runner registration for {self.repository}"):
            if single:
                data = self._request(
                    "POST",
                    "/actions/runners/generate-jitconfig",
                    {"name": name, "runner_group_id": 1, "labels": labels, "work_folder": "_work"},
                )
                secret = str(data["encoded_jit_config"])
                self.scrubber.add(secret)
                return Registration("jit", secret, self.web_url, int(data["runner"]["id"]))
            data = self._request("POST", "/actions/runners/registration-token")
            secret = str(data["token"])
            self.scrubber.add(secret)
            return Registration("token", secret, self.web_url)

    def runners(self) -> list[ForgeRunner]:
        """Every self-hosted runner, all pages."""
        found: list[ForgeRunner] = []
        with self._errors(f"listing the runners of {self.repository}"):
            page = 1
            while True:
                data = self.client.requester.requestJsonAndCheck(
                    "GET",
                    self.api_url + self._path + "/actions/runners",
                    parameters={"per_page": 100, "page": page},
                )[1]
                batch = data.get("runners", [])
                found.extend(
                    ForgeRunner(
                        id=int(r["id"]),
                        name=str(r["name"]),
                        online=r.get("status") == "online",
                        busy=bool(r.get("busy")),
                        labels=tuple(str(label["name"]) for label in r.get("labels", [])),
                    )
                    for r in batch
                )
                if len(batch) < 100:
                    return found
                page += 1

    def remove(self, runner_id: int) -> None:
        """Delete the runner on GitHub (a missing one is fine)."""
        from github import UnknownObjectException

        with self._errors(f"removing runner {runner_id}"), suppress(UnknownObjectException):
            self._request("DELETE", f"/actions/runners/{runner_id}")


class GitLabRunners:
    """Runners of a GitLab project (``group/project`` or its numeric id).

    Args:
        repository: the project path or id.
        token: defaults to ``GITLAB_TOKEN`` or ``REPO_TOKEN``; a personal, project or
            group access token with ``create_runner`` and ``api`` scopes.
        url: the GitLab instance (default ``CI_SERVER_URL`` or https://gitlab.com).
    """

    name = "gitlab"

    def __init__(
        self, repository: str, *, token: str | None = None, url: str | None = None
    ) -> None:
        import gitlab

        self.repository = repository.strip("/")
        from cml_nb.forge.hosts import web_url_for_api  # --api-url gives .../api/v4

        self.url = web_url_for_api(url or os.environ.get("CI_SERVER_URL") or "https://gitlab.com")
        secret = _token(token, ("GITLAB_TOKEN", "REPO_TOKEN"), "GitLab")
        self.scrubber = Scrubber([secret])
        self.client = gitlab.Gitlab(
            self.url,
            private_token=secret,
            retry_transient_errors=True,
            timeout=30,
        )
        self._project: Any = None

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        from gitlab.exceptions import GitlabError

        try:
            yield
        except GitlabError as exc:
            status = getattr(exc, "response_code", None)
            if status == 429:
                raise RateLimitedError(
                    f"{doing}: GitLab kept rate-limiting after every retry: try again later"
                ) from exc
            raise _forge_error("GitLab", doing, status, self.scrubber, self.repository) from exc

    def project(self) -> Any:
        """The python-gitlab project (fetched once, for its numeric id)."""
        if self._project is None:
            with self._errors(f"looking up project {self.repository}"):
                self._project = self.client.projects.get(self.repository)
        return self._project

    def register(self, name: str, labels: list[str], *, single: bool) -> Registration:
        """Create a project runner with these tags; returns its authentication token."""
        project = self.project()
        with self._errors(f"creating a runner for {self.repository}"):
            runner = self.client.http_post(
                "/user/runners",
                post_data={
                    "runner_type": "project_type",
                    "project_id": project.id,
                    "description": name,
                    "tag_list": labels,
                    "run_untagged": False,
                    "locked": True,
                },
            )
        if not isinstance(runner, dict) or "token" not in runner:
            raise ForgeError(
                f"GitLab answered POST /user/runners without a token: is {self.url} GitLab >= 15.10?"
            )
        secret = str(runner["token"])
        self.scrubber.add(secret)
        return Registration("gitlab", secret, self.url, int(runner["id"]))

    def runners(self) -> list[ForgeRunner]:
        """Every runner assigned to the project."""
        project = self.project()
        with self._errors(f"listing the runners of {self.repository}"):
            listed = project.runners.list(get_all=True)
        found = []
        for r in listed:
            online = bool(getattr(r, "online", False)) or getattr(r, "status", "") == "online"
            busy = self._busy(int(r.id)) if online else False
            found.append(
                ForgeRunner(
                    id=int(r.id),
                    name=str(getattr(r, "description", "") or ""),
                    online=online,
                    busy=busy is not False,
                    labels=tuple(getattr(r, "tag_list", []) or []),
                    busy_unknown=busy is None,
                )
            )
        return found

    def _busy(self, runner_id: int) -> bool | None:
        """Whether the runner has a running job; None when GitLab would not say.

        GitLab's runner list does not say, so this asks
        https://docs.gitlab.com/api/runners/#list-jobs-processed-by-a-runner.
        """
        from gitlab.exceptions import GitlabError

        try:
            jobs = self.client.http_list(
                f"/runners/{runner_id}/jobs",
                query_data={"status": "running", "per_page": 1},
                get_all=False,
            )
        except GitlabError:  # e.g. a token without access to the runner's jobs
            return None
        return bool(list(jobs))

    def remove(self, runner_id: int) -> None:
        """Delete the runner on GitLab (a missing one is fine)."""
        from gitlab.exceptions import GitlabDeleteError

        with self._errors(f"removing runner {runner_id}"):
            try:
                self.client.runners.delete(runner_id)
            except GitlabDeleteError as exc:
                if exc.response_code != 404:
                    raise


def _forge_error(
    forge: str, doing: str, status: int | None, scrubber: Scrubber, repository: str
) -> ForgeError:
    if status in (401, 403):
        return ForgeAuthError(
            f"{doing}: {forge} refused the token (HTTP {status}): it needs permission to "
            "administer the repository's self-hosted runners (see docs/runners.md)"
        )
    if status == 404:
        return TargetNotFoundError(
            f"{doing}: {forge} has no {repository!r}, or the token cannot see it: check --repo"
        )
    return ForgeError(scrubber.scrub(f"{doing}: {forge} answered HTTP {status}: retry later"))


#: Built-in forges by name.
FORGES: dict[str, Callable[..., RunnerForge]] = {"github": GitHubRunners, "gitlab": GitLabRunners}


def get_forge(name: str, repository: str, **options: Any) -> RunnerForge:
    """The runner forge called ``name`` (built in, or from an entry point).

    Raises:
        ConfigError: no forge has that name.
    """
    factory = FORGES.get(name)
    if factory is None:
        from importlib.metadata import entry_points

        for entry in entry_points(group="cml_nb.runner_forges"):
            if entry.name == name:
                factory = entry.load()
                break
    if factory is None:
        raise ConfigError(f"unknown forge {name!r}: choose one of {', '.join(FORGES)}")
    if not repository:
        raise ConfigError(
            "no repository: pass --repo owner/name (in CI it is read from GITHUB_REPOSITORY "
            "or CI_PROJECT_PATH)"
        )
    return factory(repository, **options)
