"""GitHub: the user, repositories, issues, pull requests and their comments, commit comments."""

from __future__ import annotations

from typing import Any

from .router import Call, Reply, RouteTable, error, paginate
from .state import Account, Comment, Pull, Repo, now

routes = RouteTable("github")
R = "/repos/<owner>/<repo>"
OP = "/repos/{owner}/{repo}"


def user_json(call: Call, account: Account) -> dict[str, Any]:
    # gravatar_id is "" (not null) and avatar_url a URL in GitHub's answers (@octokit/fixtures).
    return {"login": account.login, "id": account.id, "type": account.type,
            "url": f"{call.api}/users/{account.login}", "html_url": f"{call.root}/{account.login}",
            "avatar_url": f"{call.root}/avatars/u/{account.id}", "gravatar_id": ""}  # fmt: skip


def repo_json(call: Call, repo: Repo) -> dict[str, Any]:
    found = {
        "id": repo.id,
        "name": repo.full_name.split("/")[1],
        "full_name": repo.full_name,
        "private": repo.private,
        "owner": user_json(call, repo.owner),
        "default_branch": repo.default_branch,
        "url": f"{call.api}/repos/{repo.full_name}",
        "html_url": f"{call.root}/{repo.full_name}",
        "visibility": "private" if repo.private else "public",
        # Settings GitHub reports on every repository (recorded in @octokit/fixtures,
        # scenarios/api.github.com/get-repository), at their defaults.
        "has_downloads": True, "allow_forking": True, "is_template": False,
        "web_commit_signoff_required": False, "topics": [], "temp_clone_token": "",
        "allow_squash_merge": True, "allow_merge_commit": True, "allow_rebase_merge": True,
        "allow_auto_merge": False, "delete_branch_on_merge": False,
        "allow_update_branch": False, "use_squash_pr_title_as_default": False,
    }  # fmt: skip
    if call.grant is not None:  # the caller's own access, as GitHub adds it for a signed-in caller
        write = bool(call.grant.permissions)
        admin = "administration" in call.grant.permissions
        found["permissions"] = {"admin": admin, "maintain": admin, "push": write,
                                "triage": write, "pull": True}  # fmt: skip
    if repo.owner.type == "Organization":  # org-owned repositories name their organization
        found["organization"] = user_json(call, repo.owner)
    return found


def find_repo(call: Call) -> Repo | None:
    repo = call.state.repo(f"{call.args['owner']}/{call.args['repo']}")
    return repo if repo is not None and repo.forge == "github" else None


def issue_comment_json(call: Call, repo: Repo, number: int, c: Comment) -> dict[str, Any]:
    base = f"{call.api}/repos/{repo.full_name}"
    return {"id": c.id, "body": c.body, "user": user_json(call, c.author),
            "created_at": c.created_at, "updated_at": c.updated_at,
            "url": f"{base}/issues/comments/{c.id}", "issue_url": f"{base}/issues/{number}",
            "html_url": f"{call.root}/{repo.full_name}/pull/{number}#issuecomment-{c.id}",
            "author_association": "MEMBER"}  # fmt: skip


def commit_comment_json(call: Call, repo: Repo, sha: str, c: Comment) -> dict[str, Any]:
    return {"id": c.id, "body": c.body, "user": user_json(call, c.author), "commit_id": sha,
            "created_at": c.created_at, "updated_at": c.updated_at, "position": None,
            "line": None, "path": None, "author_association": "MEMBER",
            "url": f"{call.api}/repos/{repo.full_name}/comments/{c.id}",
            "html_url": f"{call.root}/{repo.full_name}/commit/{sha}#commitcomment-{c.id}"}  # fmt: skip


def fork_json(call: Call, repo: Repo, full_name: str) -> dict[str, Any]:
    """The head repository of a PR from a fork: another owner, ``fork: true``."""
    owner = call.state.account(full_name.split("/")[0])
    fork = Repo("github", full_name, repo.id + 50000, owner, repo.default_branch, repo.private)
    return {**repo_json(call, fork), "fork": True}


def pull_json(call: Call, repo: Repo, p: Pull) -> dict[str, Any]:
    def side(ref: str, sha: str, head: bool) -> dict[str, Any]:
        where = repo_json(call, repo)
        if head and p.head_repo:
            where = fork_json(call, repo, p.head_repo)
        owner = where["owner"]
        return {"ref": ref, "sha": sha, "label": f"{owner['login']}:{ref}", "repo": where,
                "user": owner}  # fmt: skip

    base_sha = repo.git.refs.get(f"heads/{p.base}", "")
    return {"id": p.number + 90000, "number": p.number, "state": p.state, "title": p.title,
            "body": p.body, "user": user_json(call, p.author), "draft": False,
            "locked": p.locked,
            "url": f"{call.api}/repos/{repo.full_name}/pulls/{p.number}",
            "html_url": f"{call.root}/{repo.full_name}/pull/{p.number}",
            "head": side(p.head, p.head_sha, True), "base": side(p.base, base_sha, False),
            "created_at": now(), "updated_at": now()}  # fmt: skip


def _thread(repo: Repo, number: int) -> list[Comment] | None:
    if number in repo.pulls:
        return repo.pulls[number].comments
    if number in repo.issues:
        return repo.issues[number].comments
    return None


def _find_comment(repo: Repo, cid: int, *, commit: bool) -> tuple[list[Comment], Comment] | None:
    threads = list(repo.commit_comments.values()) if commit else (
        [p.comments for p in repo.pulls.values()] + [i.comments for i in repo.issues.values()]
    )  # fmt: skip
    for thread in threads:
        for c in thread:
            if c.id == cid:
                return thread, c
    return None


@routes.get("/user", op="/user")
def get_user(call: Call) -> Reply:
    assert call.grant is not None
    if call.grant.app:  # installation tokens have no user: GET /user answers 403 (as GitHub does)
        return error(403, "Resource not accessible by integration")
    return Reply(200, {**user_json(call, call.grant.account), "user_view_type": "private"})


@routes.get(R, op=OP)
def get_repo(call: Call) -> Reply:
    repo = find_repo(call)
    return error(404, "Not Found") if repo is None else Reply(200, repo_json(call, repo))


@routes.get(R + "/issues/<int:number>", op=OP + "/issues/{issue_number}")
def get_issue(call: Call) -> Reply:
    repo = find_repo(call)
    number = int(call.args["number"])
    if repo is None or _thread(repo, number) is None:
        return error(404, "Not Found")
    author = repo.pulls[number].author if number in repo.pulls else repo.issues[number].author
    body: dict[str, Any] = {"id": number + 80000, "number": number, "state": "open",
            "title": "issue", "user": user_json(call, author),
            "url": f"{call.api}/repos/{repo.full_name}/issues/{number}",
            "html_url": f"{call.root}/{repo.full_name}/issues/{number}"}  # fmt: skip
    if number in repo.pulls:
        body["pull_request"] = {"url": f"{call.api}/repos/{repo.full_name}/pulls/{number}",
                                "html_url": f"{call.root}/{repo.full_name}/pull/{number}"}  # fmt: skip
    return Reply(200, body)


@routes.get(R + "/issues/<int:number>/comments", op=OP + "/issues/{issue_number}/comments")
def list_issue_comments(call: Call) -> Reply:
    repo = find_repo(call)
    number = int(call.args["number"])
    thread = None if repo is None else _thread(repo, number)
    if repo is None or thread is None:
        return error(404, "Not Found")
    items = [issue_comment_json(call, repo, number, c) for c in thread]
    return paginate(call, items, f"{call.api}/repos/{repo.full_name}/issues/{number}/comments")


def may_write_thread(call: Call, repo: Repo, number: int) -> Reply | None:
    """403 unless the token may write comments on issue or pull request ``number``."""
    assert call.grant is not None
    # https://docs.github.com/en/rest/issues/comments#create-an-issue-comment (fine-grained
    # permissions): "Issues" or "Pull requests" write; on a plain issue only "Issues" counts,
    # so `permissions: pull-requests: write` alone comments on a pull request.
    needed = {"issues", "pull_requests"} if number in repo.pulls else {"issues"}
    if not needed & call.grant.permissions:
        return error(403, "Resource not accessible by integration")
    return None


def _locked(call: Call, repo: Repo, number: int) -> Reply | None:
    item = repo.pulls.get(number) or repo.issues.get(number)
    assert call.grant is not None
    if item is not None and item.locked and call.grant.account != repo.owner:
        # Recorded answer (renovatebot/renovate#6215, probot/stale#25): only collaborators
        # may comment on a locked conversation; apps get this 403.
        return Reply(403, {"message": "Unable to create comment because issue is locked.",
                           "documentation_url": "https://docs.github.com/articles/locking-conversations/"})  # fmt: skip
    return None


@routes.post(R + "/issues/<int:number>/comments", op=OP + "/issues/{issue_number}/comments")
def create_issue_comment(call: Call) -> Reply:
    repo = find_repo(call)
    number = int(call.args["number"])
    thread = None if repo is None else _thread(repo, number)
    if repo is None or thread is None:
        return error(404, "Not Found")
    assert call.grant is not None
    refused = may_write_thread(call, repo, number) or _locked(call, repo, number)
    if refused is not None:
        return refused
    comment = Comment(call.state.next_id(), call.json["body"], call.grant.account)
    thread.append(comment)
    return Reply(201, issue_comment_json(call, repo, number, comment))


def _number_of(repo: Repo, comment: Comment) -> int:
    return next(n for n in [*repo.pulls, *repo.issues] if comment in (_thread(repo, n) or []))


@routes.patch(R + "/issues/comments/<int:cid>", op=OP + "/issues/comments/{comment_id}")
def update_issue_comment(call: Call) -> Reply:
    repo = find_repo(call)
    found = None if repo is None else _find_comment(repo, int(call.args["cid"]), commit=False)
    if repo is None or found is None:
        return error(404, "Not Found")
    _, comment = found
    number = _number_of(repo, comment)
    refused = may_write_thread(call, repo, number)
    if refused is not None:
        return refused
    comment.body, comment.updated_at = call.json["body"], now()
    return Reply(200, issue_comment_json(call, repo, number, comment))


@routes.delete(R + "/issues/comments/<int:cid>", op=OP + "/issues/comments/{comment_id}")
def delete_issue_comment(call: Call) -> Reply:
    repo = find_repo(call)
    found = None if repo is None else _find_comment(repo, int(call.args["cid"]), commit=False)
    if repo is None or found is None:
        return error(404, "Not Found")
    thread, comment = found
    refused = may_write_thread(call, repo, _number_of(repo, comment))
    if refused is not None:
        return refused
    thread.remove(comment)
    return Reply(204, None)


def _head_owner(repo: Repo, pull: Pull) -> str:
    return (pull.head_repo or repo.full_name).split("/")[0]


@routes.get(R + "/pulls", op=OP + "/pulls")
def list_pulls(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    state = call.request.args.get("state", "open")
    head = call.request.args.get("head")
    base = call.request.args.get("base")
    pulls = [p for p in repo.pulls.values() if state == "all" or p.state == state]
    if head:
        # https://docs.github.com/en/rest/pulls/pulls#list-pull-requests: ``head`` is
        # ``user:ref-name`` (the head repository's owner); a bare branch name matches nothing.
        owner, _, ref = head.rpartition(":")
        pulls = [p for p in pulls if p.head == ref and owner == _head_owner(repo, p)]
    if base:
        pulls = [p for p in pulls if p.base == base]
    items = [pull_json(call, repo, p) for p in pulls]
    return paginate(call, items, f"{call.api}/repos/{repo.full_name}/pulls")


@routes.post(R + "/pulls", op=OP + "/pulls", perm="pull_requests")
def create_pull(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    data = call.json
    head, base = data["head"].split(":")[-1], data["base"]
    for name, branch in (("base", base), ("head", head)):
        if f"heads/{branch}" not in repo.git.refs:
            # The 422 shape recorded in @octokit/fixtures (scenarios/.../errors): a list of
            # {resource, field, code}, here for a branch that does not exist.
            return Reply(422, {"message": "Validation Failed", "errors": [
                {"resource": "PullRequest", "field": name, "code": "invalid"}],
                "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"})  # fmt: skip
    if any(p.head == head and p.state == "open" for p in repo.pulls.values()):
        owner = repo.full_name.split("/")[0]
        return Reply(422, {"message": "Validation Failed", "errors": [
            {"message": f"A pull request already exists for {owner}:{head}."}]})  # fmt: skip
    assert call.grant is not None
    if call.grant.app and not repo.actions_can_open_pulls:
        # Recorded answer (danielroe/uppt#11); the repository setting "Allow GitHub Actions
        # to create and approve pull requests" is off, whatever `permissions:` grants.
        return Reply(403, {"message": "GitHub Actions is not permitted to create or approve "
                           "pull requests.", "documentation_url":
                           "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"})  # fmt: skip
    pull = Pull(call.state.next_number(repo), data["title"], data.get("body") or "", head, base,
                repo.head_sha(head), call.grant.account)  # fmt: skip
    repo.pulls[pull.number] = pull
    return Reply(201, pull_json(call, repo, pull))


@routes.get(R + "/pulls/<int:number>", op=OP + "/pulls/{pull_number}")
def get_pull(call: Call) -> Reply:
    repo = find_repo(call)
    number = int(call.args["number"])
    if repo is None or number not in repo.pulls:
        return error(404, "Not Found")
    pull = repo.pulls[number]
    pull.head_sha = repo.git.refs.get(pull.head_ref, pull.head_sha)
    return Reply(200, pull_json(call, repo, pull))


@routes.patch(R + "/pulls/<int:number>", op=OP + "/pulls/{pull_number}", perm="pull_requests")
def update_pull(call: Call) -> Reply:
    repo = find_repo(call)
    number = int(call.args["number"])
    if repo is None or number not in repo.pulls:
        return error(404, "Not Found")
    pull = repo.pulls[number]
    data = call.json
    pull.title = data.get("title", pull.title)
    pull.body = data.get("body", pull.body)
    pull.state = data.get("state", pull.state)
    return Reply(200, pull_json(call, repo, pull))


def ancestors(repo: Repo, sha: str) -> set[str]:
    seen: set[str] = set()
    todo = [sha]
    while todo:
        current = todo.pop()
        if current in seen or current not in repo.git.commits:
            continue
        seen.add(current)
        todo.extend(repo.git.commits[current]["parents"])
    return seen


@routes.get(R + "/commits/<sha>/pulls", op=OP + "/commits/{commit_sha}/pulls")
def pulls_for_commit(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    sha = call.args["sha"]
    found = []
    for pull in repo.pulls.values():
        if pull.head_repo:
            # Conservative: GitHub documents this endpoint for commits of the repository
            # itself; a fork's commits are not relied on to be found here.
            continue
        head = repo.git.refs.get(f"heads/{pull.head}", pull.head_sha)
        base = repo.git.refs.get(f"heads/{pull.base}", "")
        if sha in ancestors(repo, head) and sha not in ancestors(repo, base):
            found.append(pull_json(call, repo, pull))
    return paginate(call, found, f"{call.api}/repos/{repo.full_name}/commits/{sha}/pulls")


@routes.get(R + "/commits/<sha>/comments", op=OP + "/commits/{commit_sha}/comments")
def list_commit_comments(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    sha = call.args["sha"]
    items = [commit_comment_json(call, repo, sha, c) for c in repo.commit_comments.get(sha, [])]
    return paginate(call, items, f"{call.api}/repos/{repo.full_name}/commits/{sha}/comments")


@routes.get(R + "/comments", op=OP + "/comments")
def list_all_commit_comments(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    items = [commit_comment_json(call, repo, sha, c)
             for sha, thread in repo.commit_comments.items() for c in thread]  # fmt: skip
    items.sort(key=lambda c: c["id"])
    return paginate(call, items, f"{call.api}/repos/{repo.full_name}/comments")


@routes.post(R + "/commits/<sha>/comments", op=OP + "/commits/{commit_sha}/comments",
             perm="contents")  # fmt: skip
def create_commit_comment(call: Call) -> Reply:
    repo = find_repo(call)
    sha = call.args["sha"]
    if repo is None or sha not in repo.git.commits:
        return Reply(422, {"message": "No commit found for SHA: " + sha})
    assert call.grant is not None
    comment = Comment(call.state.next_id(), call.json["body"], call.grant.account)
    repo.commit_comments.setdefault(sha, []).append(comment)
    return Reply(201, commit_comment_json(call, repo, sha, comment))


def _commit_comment(call: Call) -> tuple[Repo, str, list[Comment], Comment] | None:
    repo = find_repo(call)
    if repo is None:
        return None
    for sha, thread in repo.commit_comments.items():
        for c in thread:
            if c.id == int(call.args["cid"]):
                return repo, sha, thread, c
    return None


@routes.patch(R + "/comments/<int:cid>", op=OP + "/comments/{comment_id}", perm="contents")
def update_commit_comment(call: Call) -> Reply:
    found = _commit_comment(call)
    if found is None:
        return error(404, "Not Found")
    repo, sha, _, comment = found
    comment.body, comment.updated_at = call.json["body"], now()
    return Reply(200, commit_comment_json(call, repo, sha, comment))


@routes.delete(R + "/comments/<int:cid>", op=OP + "/comments/{comment_id}", perm="contents")
def delete_commit_comment(call: Call) -> Reply:
    found = _commit_comment(call)
    if found is None:
        return error(404, "Not Found")
    _, _, thread, comment = found
    thread.remove(comment)
    return Reply(204, None)
