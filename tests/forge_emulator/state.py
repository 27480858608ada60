"""The emulator's state: accounts, tokens, repositories with a tiny git object store,
issues and pull requests, comments, checks, statuses, uploads and runners.

One ``State`` holds both forges; GitHub repositories are keyed ``owner/name`` and
GitLab projects by id and path. Tests arrange it directly (``state.add_repo``) and
read it back to assert what a user would see on the forge.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

#: Permissions a GitHub token may hold (fine-grained names) or a GitLab token's scope.
ALL_PERMISSIONS = frozenset(
    {"contents", "issues", "pull_requests", "checks", "statuses", "administration"}
)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Account:
    login: str
    id: int
    type: str = "User"  # or "Bot"


@dataclass
class RateBudget:
    """A token's primary rate limit: ``limit`` requests per window ending at ``reset_at``.

    https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api:
    GITHUB_TOKEN gets 1,000 requests an hour per repository, a user's token 5,000; every
    answer carries ``x-ratelimit-*``; past the limit GitHub answers 403 or 429 with
    ``x-ratelimit-remaining: 0`` until ``x-ratelimit-reset`` (epoch seconds).
    """

    limit: int = 5000
    used: int = 0
    reset_at: float = field(default_factory=lambda: time.time() + 3600)
    #: 403 or 429: GitHub documents both for an exhausted primary limit.
    status: int = 403

    def roll(self) -> None:
        if time.time() >= self.reset_at:
            self.used, self.reset_at = 0, time.time() + 3600

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    def exhaust(self, *, reset_in: float, status: int = 403) -> None:
        """Spend the whole budget; it comes back ``reset_in`` seconds from now."""
        self.used, self.reset_at, self.status = self.limit, time.time() + reset_in, status

    def headers(self) -> dict[str, str]:
        # The five headers of every REST answer (the recorded @octokit/fixtures show them).
        return {"x-ratelimit-limit": str(self.limit), "x-ratelimit-remaining": str(self.remaining),
                "x-ratelimit-used": str(self.used), "x-ratelimit-reset": str(int(self.reset_at)),
                "x-ratelimit-resource": "core"}  # fmt: skip


@dataclass
class Grant:
    """What one token may do."""

    account: Account
    permissions: frozenset[str] = ALL_PERMISSIONS
    #: GitHub App installation tokens (GITHUB_TOKEN) cannot read GET /user.
    app: bool = False
    rate: RateBudget = field(default_factory=RateBudget)


@dataclass
class Comment:
    id: int
    body: str
    author: Account
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    #: GitLab commit comments live in a discussion.
    discussion_id: str = ""


@dataclass
class Pull:
    """A GitHub pull request or GitLab merge request."""

    number: int
    title: str
    body: str
    head: str
    base: str
    head_sha: str
    author: Account
    state: str = "open"
    comments: list[Comment] = field(default_factory=list)
    #: ``owner/name`` of the fork the head branch lives in; None for a same-repository PR.
    head_repo: str | None = None
    #: A locked conversation takes comments from collaborators only.
    locked: bool = False

    @property
    def head_ref(self) -> str:
        """Where the head commit is kept in the base repository (forks: ``pull/N/head``)."""
        return f"pull/{self.number}/head" if self.head_repo else f"heads/{self.head}"


@dataclass
class Issue:
    number: int
    title: str
    author: Account
    comments: list[Comment] = field(default_factory=list)
    locked: bool = False


@dataclass
class GitStore:
    """Blobs, trees and commits addressed by sha1, and refs, like git itself."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    trees: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # "heads/main" -> commit sha

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        self.blobs[sha] = data
        return sha

    def put_tree(self, entries: list[dict[str, Any]]) -> str:
        entries = sorted(entries, key=lambda e: e["path"])
        text = "".join(f"{e['mode']} {e['type']} {e['sha']}\t{e['path']}\n" for e in entries)
        sha = hashlib.sha1(b"tree " + text.encode()).hexdigest()
        self.trees[sha] = entries
        return sha

    def put_commit(self, tree: str, parents: list[str], message: str) -> str:
        text = f"tree {tree}\n{' '.join(parents)}\n{message}\n{now()}"
        sha = hashlib.sha1(b"commit " + text.encode()).hexdigest()
        self.commits[sha] = {"tree": tree, "parents": parents, "message": message, "date": now()}
        return sha

    def flat_files(self, tree_sha: str, prefix: str = "") -> dict[str, str]:
        """``{path: blob sha}`` of every file under a tree."""
        files: dict[str, str] = {}
        for entry in self.trees.get(tree_sha, []):
            path = prefix + entry["path"]
            if entry["type"] == "tree":
                files.update(self.flat_files(entry["sha"], path + "/"))
            else:
                files[path] = entry["sha"]
        return files

    def tree_from_files(self, files: dict[str, str]) -> str:
        """A (nested) tree for ``{path: blob sha}``."""
        top: dict[str, Any] = {}
        for path, sha in files.items():
            node = top
            *dirs, name = path.split("/")
            for part in dirs:
                node = node.setdefault(part, {})
            node[name] = sha
        return self._write(top)

    def _write(self, node: dict[str, Any]) -> str:
        entries = []
        for name, value in node.items():
            if isinstance(value, dict):
                entries.append(
                    {"path": name, "mode": "040000", "type": "tree", "sha": self._write(value)}
                )
            else:
                entries.append({"path": name, "mode": "100644", "type": "blob", "sha": value})
        return self.put_tree(entries)

    def commit_files(self, branch: str, files: dict[str, bytes], message: str) -> str:
        """Commit ``files`` on top of ``branch`` (created if missing); returns the sha."""
        parent = self.refs.get(f"heads/{branch}")
        current = self.flat_files(self.commits[parent]["tree"]) if parent else {}
        for path, data in files.items():
            current[path] = self.put_blob(data)
        sha = self.put_commit(self.tree_from_files(current), [parent] if parent else [], message)
        self.refs[f"heads/{branch}"] = sha
        return sha

    def read(self, ref: str, path: str) -> bytes | None:
        """A file's bytes at a branch name or commit sha, None when absent."""
        sha = self.refs.get(f"heads/{ref}", ref)
        commit = self.commits.get(sha)
        if commit is None:
            return None
        blob = self.flat_files(commit["tree"]).get(path)
        return None if blob is None else self.blobs[blob]


@dataclass
class Repo:
    """A GitHub repository or a GitLab project."""

    forge: str
    full_name: str
    id: int
    owner: Account
    default_branch: str = "main"
    private: bool = True
    git: GitStore = field(default_factory=GitStore)
    pulls: dict[int, Pull] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    commit_comments: dict[str, list[Comment]] = field(default_factory=dict)
    check_runs: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    runners: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Branches with a protection rule (GitHub's GET .../branches/{branch} "protected").
    protected_branches: set[str] = field(default_factory=set)
    #: Settings > Actions > "Allow GitHub Actions to create and approve pull requests";
    #: off in new repositories since 2022 (github.blog/changelog/2022-05-03).
    actions_can_open_pulls: bool = False

    def all_comments(self) -> list[Comment]:
        """Every comment on pulls, issues and commits."""
        found = [c for p in self.pulls.values() for c in p.comments]
        found += [c for i in self.issues.values() for c in i.comments]
        found += [c for cs in self.commit_comments.values() for c in cs]
        return found

    def head_sha(self, branch: str | None = None) -> str:
        return self.git.refs[f"heads/{branch or self.default_branch}"]


class State:
    """Everything both emulated forges hold; guarded by one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tokens: dict[str, Grant] = {}
        self.repos: dict[str, Repo] = {}
        self._ids = itertools.count(1000)
        self._numbers: dict[str, itertools.count[int]] = {}

    def next_id(self) -> int:
        return next(self._ids)

    def next_number(self, repo: Repo) -> int:
        counter = self._numbers.setdefault(repo.full_name, itertools.count(1))
        return next(counter)

    def add_token(
        self,
        token: str,
        login: str,
        *,
        permissions: frozenset[str] | set[str] = ALL_PERMISSIONS,
        app: bool = False,
        bot: bool = False,
    ) -> Grant:
        account = self.account(login, bot=bot)
        # GITHUB_TOKEN: 1,000 requests an hour per repository; a user's token 5,000
        # (docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api).
        grant = Grant(account, frozenset(permissions), app, RateBudget(1000 if app else 5000))
        self.tokens[token] = grant
        return grant

    def account(self, login: str, *, bot: bool = False) -> Account:
        for grant in self.tokens.values():
            if grant.account.login == login:
                return grant.account
        return Account(login, self.next_id(), "Bot" if bot else "User")

    def add_repo(
        self, forge: str, full_name: str, *, files: dict[str, bytes] | None = None
    ) -> Repo:
        """A repository with one commit on ``main`` holding ``files``."""
        owner = self.account(full_name.split("/")[0])
        repo = Repo(forge, full_name, self.next_id(), owner)
        repo.git.commit_files("main", files or {"README.md": b"# test\n"}, "initial commit")
        self.repos[full_name] = repo
        return repo

    def repo(self, full_name: str) -> Repo | None:
        return self.repos.get(full_name)

    def repo_by_id(self, key: str) -> Repo | None:
        if key.isdigit():
            return next((r for r in self.repos.values() if r.id == int(key)), None)
        return self.repos.get(key)

    def add_pull(
        self,
        repo: Repo,
        head: str,
        *,
        base: str | None = None,
        files: dict[str, bytes] | None = None,
        fork: str | None = None,
    ) -> Pull:
        """Open a pull request from a new branch ``head`` with one more commit.

        ``fork`` (``owner/name``) puts the head branch in a fork: the base repository
        then holds the head commit only under ``refs/pull/N/head``, as GitHub does.
        """
        base = base or repo.default_branch
        number = self.next_number(repo)
        author = self.account(fork.split("/")[0]) if fork else repo.owner
        pull = Pull(number, f"Change {head}", "", head, base, "", author, head_repo=fork)
        content = files or {f"{head}.txt": head.encode()}
        if fork:
            branch = f"__fork_{number}"  # build the commit, then keep it as pull/N/head only
            repo.git.refs[f"heads/{branch}"] = repo.head_sha(base)
            repo.git.commit_files(branch, content, f"work on {head}")
            repo.git.refs[pull.head_ref] = repo.git.refs.pop(f"heads/{branch}")
        elif f"heads/{head}" not in repo.git.refs:
            repo.git.refs[f"heads/{head}"] = repo.head_sha(base)
            repo.git.commit_files(head, content, f"work on {head}")
        pull.head_sha = repo.git.refs[pull.head_ref]
        repo.pulls[number] = pull
        return pull

    def add_issue(self, repo: Repo, title: str = "An issue") -> Issue:
        issue = Issue(self.next_number(repo), title, repo.owner)
        repo.issues[issue.number] = issue
        return issue
