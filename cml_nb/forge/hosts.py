"""Which forge a git host is, and where its REST API and web pages live.

A registry of rules, tried in order: the public hosts under every name their git
remotes use (``github.com``, ``ssh.github.com`` for SSH over port 443,
``gitlab.com``, ``altssh.gitlab.com``), GitHub Enterprise Cloud with data residency
(``<sub>.ghe.com``, API at ``api.<sub>.ghe.com``), then self-hosted instances whose
name says ``github`` (GitHub Enterprise Server, API under ``/api/v3``) or ``gitlab``
(API under ``/api/v4``). Any other host is unknown: cml-nb never guesses a public
forge for it, because the token would then go to a host the user did not name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ForgeHost:
    """A forge instance as cml-nb addresses it.

    Attributes:
        forge: ``github`` or ``gitlab``.
        api_url: the REST API root, where the token is sent.
        web_url: the web root (repository pages, runner registration).
        rule: the name of the rule that matched, for messages.
    """

    forge: str
    api_url: str
    web_url: str
    rule: str


@dataclass(frozen=True)
class HostRule:
    """One row of the registry: a host pattern and how to build the instance's URLs."""

    name: str
    pattern: re.Pattern[str]
    forge: str
    build: Callable[[re.Match[str]], tuple[str, str]]  # match -> (api_url, web_url)

    def match(self, host: str) -> ForgeHost | None:
        """The instance for ``host`` when this rule covers it."""
        found = self.pattern.fullmatch(host)
        if found is None:
            return None
        api, web = self.build(found)
        return ForgeHost(self.forge, api, web, self.name)


def _fixed(api: str, web: str) -> Callable[[re.Match[str]], tuple[str, str]]:
    return lambda _found: (api, web)


#: Tried in order; the first match wins.
RULES: list[HostRule] = [
    # https://docs.github.com/en/authentication/troubleshooting-ssh/using-ssh-over-the-https-port
    HostRule(
        "github.com",
        re.compile(r"(?:www\.|ssh\.)?github\.com"),
        "github",
        _fixed("https://api.github.com", "https://github.com"),
    ),  # fmt: skip
    # https://docs.github.com/en/enterprise-cloud@latest/admin/data-residency/network-details-for-ghecom
    HostRule(
        "GitHub Enterprise Cloud (ghe.com)",
        re.compile(r"(?:ssh\.)?(?P<sub>[a-z0-9][a-z0-9-]*)\.ghe\.com"),
        "github",
        lambda m: (f"https://api.{m['sub']}.ghe.com", f"https://{m['sub']}.ghe.com"),
    ),  # fmt: skip
    # https://docs.gitlab.com/user/gitlab_com/#alternative-ssh-port (altssh.gitlab.com:443)
    HostRule(
        "gitlab.com",
        re.compile(r"(?:www\.|altssh\.)?gitlab\.com"),
        "gitlab",
        _fixed("https://gitlab.com/api/v4", "https://gitlab.com"),
    ),  # fmt: skip
    # GitHub Enterprise Server serves the REST API under /api/v3 on its own host.
    HostRule(
        "GitHub Enterprise Server",
        re.compile(r".*github.*"),
        "github",
        lambda m: (f"https://{m[0]}/api/v3", f"https://{m[0]}"),
    ),  # fmt: skip
    HostRule(
        "self-managed GitLab",
        re.compile(r".*gitlab.*"),
        "gitlab",
        lambda m: (f"https://{m[0]}/api/v4", f"https://{m[0]}"),
    ),  # fmt: skip
]

#: The public instance of each forge, for ``--forge X --repo Y`` outside any checkout.
PUBLIC = {
    "github": ForgeHost("github", "https://api.github.com", "https://github.com", "github.com"),
    "gitlab": ForgeHost("gitlab", "https://gitlab.com/api/v4", "https://gitlab.com", "gitlab.com"),
}


def lookup(host: str) -> ForgeHost | None:
    """The forge instance a git host belongs to, None when no rule knows the host."""
    lowered = host.strip().lower().rstrip(".")
    for rule in RULES:
        found = rule.match(lowered)
        if found is not None:
            return found
    return None


def web_url_for_api(api_url: str) -> str:
    """The web root of the instance whose REST API root is ``api_url``.

    ``https://api.github.com`` is ``https://github.com``, ``https://api.<sub>.ghe.com``
    is ``https://<sub>.ghe.com``; self-hosted roots lose their ``/api/v3`` or ``/api/v4``.
    """
    url = api_url.rstrip("/")
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    lowered = host.lower()
    if lowered == "api.github.com":
        return f"{scheme}://github.com"
    if lowered.startswith("api.") and lowered.endswith(".ghe.com"):
        return f"{scheme}://{host[4:]}"
    for suffix in ("api/v3", "api/v4"):
        if path == suffix or path.endswith("/" + suffix):
            path = path[: -len(suffix)].rstrip("/")
    return f"{scheme}://{host}" + (f"/{path}" if path else "")


__all__ = ["PUBLIC", "RULES", "ForgeHost", "HostRule", "lookup", "web_url_for_api"]
