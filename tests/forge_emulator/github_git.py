"""GitHub: the Git Data API, file contents, check runs, commit statuses, raw web files."""

from __future__ import annotations

import base64
from typing import Any

from .github_issues import OP, R, ancestors, find_repo, user_json
from .router import Call, Reply, RouteTable, error, paginate
from .state import Repo, now

routes = RouteTable("github")


def _base(call: Call, repo: Repo) -> str:
    return f"{call.api}/repos/{repo.full_name}"


def _resolve(repo: Repo, ref: str) -> str | None:
    """A branch name, ``heads/x``, ``refs/heads/x`` or commit sha as a commit sha."""
    name = ref.removeprefix("refs/").removeprefix("heads/")
    sha = repo.git.refs.get(f"heads/{name}")
    return sha or (ref if ref in repo.git.commits else None)


@routes.post(R + "/git/blobs", op=OP + "/git/blobs", perm="contents")
def create_blob(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    data = call.json
    raw = base64.b64decode(data["content"]) if data.get("encoding") == "base64" else (
        data["content"].encode()
    )  # fmt: skip
    sha = repo.git.put_blob(raw)
    return Reply(201, {"sha": sha, "url": f"{_base(call, repo)}/git/blobs/{sha}"})


@routes.get(R + "/git/blobs/<sha>", op=OP + "/git/blobs/{file_sha}")
def get_blob(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None or call.args["sha"] not in repo.git.blobs:
        return error(404, "Not Found")
    raw = repo.git.blobs[call.args["sha"]]
    return Reply(200, {"sha": call.args["sha"], "size": len(raw), "encoding": "base64",
                       "content": base64.b64encode(raw).decode(), "node_id": "",
                       "url": f"{_base(call, repo)}/git/blobs/{call.args['sha']}"})  # fmt: skip


def _tree_json(call: Call, repo: Repo, sha: str, recursive: bool) -> dict[str, Any]:
    def entries(tree: str, prefix: str) -> list[dict[str, Any]]:
        found = []
        for e in repo.git.trees[tree]:
            item = {
                **e,
                "path": prefix + e["path"],
                "url": f"{_base(call, repo)}/git/{e['type']}s/{e['sha']}",
            }
            if e["type"] == "blob":
                item["size"] = len(repo.git.blobs[e["sha"]])
            found.append(item)
            if recursive and e["type"] == "tree":
                found += entries(e["sha"], prefix + e["path"] + "/")
        return found

    return {"sha": sha, "url": f"{_base(call, repo)}/git/trees/{sha}",
            "tree": entries(sha, ""), "truncated": False}  # fmt: skip


@routes.post(R + "/git/trees", op=OP + "/git/trees", perm="contents")
def create_tree(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    data = call.json
    base_tree = data.get("base_tree")
    if base_tree and base_tree not in repo.git.trees:
        return Reply(422, {"message": "Invalid tree info"})
    files = repo.git.flat_files(base_tree) if base_tree else {}
    for entry in data["tree"]:
        if "content" in entry:
            files[entry["path"]] = repo.git.put_blob(entry["content"].encode())
        elif entry.get("sha") is None:
            files.pop(entry["path"], None)
        elif entry["sha"] not in repo.git.blobs:
            return Reply(422, {"message": "Invalid tree info"})
        else:
            files[entry["path"]] = entry["sha"]
    sha = repo.git.tree_from_files(files)
    return Reply(201, _tree_json(call, repo, sha, False))


@routes.get(R + "/git/trees/<sha>", op=OP + "/git/trees/{tree_sha}")
def get_tree(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    sha = call.args["sha"]
    if sha not in repo.git.trees:
        commit = _resolve(repo, sha)
        sha = repo.git.commits[commit]["tree"] if commit else sha
    if sha not in repo.git.trees:
        return error(404, "Not Found")
    return Reply(200, _tree_json(call, repo, sha, bool(call.request.args.get("recursive"))))


def _commit_json(call: Call, repo: Repo, sha: str) -> dict[str, Any]:
    commit = repo.git.commits[sha]
    person = {"name": "cml-nb", "email": "cml-nb@example.invalid", "date": commit["date"]}
    return {"sha": sha, "node_id": "", "url": f"{_base(call, repo)}/git/commits/{sha}",
            "html_url": f"{call.root}/{repo.full_name}/commit/{sha}", "message": commit["message"],
            "author": person, "committer": person,
            "tree": {"sha": commit["tree"], "url": f"{_base(call, repo)}/git/trees/{commit['tree']}"},
            "parents": [{"sha": p, "url": f"{_base(call, repo)}/git/commits/{p}",
                         "html_url": f"{call.root}/{repo.full_name}/commit/{p}"}
                        for p in commit["parents"]],
            "verification": {"verified": False, "reason": "unsigned", "signature": None,
                             "payload": None, "verified_at": None}}  # fmt: skip


@routes.get(R + "/commits/<sha>", op=OP + "/commits/{ref}")
def get_repo_commit(call: Call) -> Reply:
    repo = find_repo(call)
    sha = None if repo is None else _resolve(repo, call.args["sha"])
    if repo is None or sha is None:
        return Reply(422, {"message": f"No commit found for SHA: {call.args['sha']}"})
    return Reply(200, _repo_commit_json(call, repo, sha))


def _repo_commit_json(call: Call, repo: Repo, sha: str) -> dict[str, Any]:
    git = _commit_json(call, repo, sha)
    return {"sha": sha, "node_id": "", "url": f"{_base(call, repo)}/commits/{sha}",
            "html_url": git["html_url"], "comments_url": f"{_base(call, repo)}/commits/{sha}/comments",
            "commit": {**git, "comment_count": 0}, "author": None, "committer": None,
            "parents": git["parents"], "files": []}  # fmt: skip


@routes.post(R + "/git/commits", op=OP + "/git/commits", perm="contents")
def create_commit(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    data = call.json
    if data["tree"] not in repo.git.trees or any(
        p not in repo.git.commits for p in data.get("parents", [])
    ):
        return Reply(422, {"message": "Invalid tree or parent"})
    sha = repo.git.put_commit(data["tree"], list(data.get("parents", [])), data["message"])
    return Reply(201, _commit_json(call, repo, sha))


@routes.get(R + "/git/commits/<sha>", op=OP + "/git/commits/{commit_sha}")
def get_commit(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None or call.args["sha"] not in repo.git.commits:
        return error(404, "Not Found")
    return Reply(200, _commit_json(call, repo, call.args["sha"]))


def _ref_json(call: Call, repo: Repo, name: str) -> dict[str, Any]:
    sha = repo.git.refs[name]
    return {"ref": f"refs/{name}", "node_id": "", "url": f"{_base(call, repo)}/git/refs/{name}",
            "object": {"type": "commit", "sha": sha, "url": f"{_base(call, repo)}/git/commits/{sha}"}}  # fmt: skip


@routes.get(R + "/git/ref/<path:ref>", op=OP + "/git/ref/{ref}")
def get_ref(call: Call) -> Reply:
    repo = find_repo(call)
    name = call.args["ref"].removeprefix("refs/")
    if repo is None or name not in repo.git.refs:
        return error(404, "Not Found")
    return Reply(200, _ref_json(call, repo, name))


@routes.post(R + "/git/refs", op=OP + "/git/refs", perm="contents")
def create_ref(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    data = call.json
    name = data["ref"].removeprefix("refs/")
    if name in repo.git.refs:  # docs.github.com/en/rest/git/refs#create-a-reference: 422
        return Reply(422, {"message": "Reference already exists"})
    if data["sha"] not in repo.git.commits:
        return Reply(422, {"message": "Object does not exist"})
    repo.git.refs[name] = data["sha"]
    return Reply(201, _ref_json(call, repo, name))


@routes.patch(R + "/git/refs/<path:ref>", op=OP + "/git/refs/{ref}", perm="contents")
def update_ref(call: Call) -> Reply:
    repo = find_repo(call)
    name = call.args["ref"].removeprefix("refs/")
    if repo is None or name not in repo.git.refs:
        return Reply(422, {"message": "Reference does not exist"})
    data = call.json
    if data["sha"] not in repo.git.commits:
        return Reply(422, {"message": "Object does not exist"})
    if not data.get("force") and repo.git.refs[name] not in ancestors(repo, data["sha"]):
        # https://docs.github.com/en/rest/git/refs#update-a-reference: without force, only
        # a fast-forward; GitHub answers 422 "Update is not a fast forward".
        return Reply(422, {"message": "Update is not a fast forward"})
    repo.git.refs[name] = data["sha"]
    return Reply(200, _ref_json(call, repo, name))


# https://docs.github.com/en/rest/branches/branches#get-a-branch: "protected" says whether
# a protection rule applies; an unknown branch is 404 "Branch not found".
@routes.get(R + "/branches/<path:branch>", op=OP + "/branches/{branch}")
def get_branch(call: Call) -> Reply:
    repo = find_repo(call)
    name = call.args["branch"]
    if repo is None:
        return error(404, "Not Found")
    if f"heads/{name}" not in repo.git.refs:
        return error(404, "Branch not found")
    sha = repo.git.refs[f"heads/{name}"]
    url = f"{_base(call, repo)}/branches/{name}"
    return Reply(200, {"name": name, "commit": _repo_commit_json(call, repo, sha),
                       "protected": name in repo.protected_branches,
                       "protection_url": f"{url}/protection",
                       "_links": {"self": url, "html": f"{call.root}/{repo.full_name}/tree/{name}"}})  # fmt: skip


@routes.get(R + "/contents/<path:path>", op=OP + "/contents/{path}")
def get_contents(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    ref = call.request.args.get("ref") or repo.default_branch
    sha = _resolve(repo, ref)
    path = call.args["path"]
    raw = None if sha is None else repo.git.read(sha, path)
    if raw is None:
        return error(404, "Not Found")
    blob = repo.git.put_blob(raw)
    url = f"{_base(call, repo)}/contents/{path}?ref={ref}"
    html = f"{call.root}/{repo.full_name}/blob/{ref}/{path}"
    return Reply(200, {"type": "file", "encoding": "base64", "size": len(raw),
                       "name": path.rsplit("/", 1)[-1], "path": path, "sha": blob,
                       "content": base64.b64encode(raw).decode(), "url": url, "html_url": html,
                       "git_url": f"{_base(call, repo)}/git/blobs/{blob}",
                       "download_url": f"{html}?raw=true",
                       "_links": {"self": url, "git": f"{_base(call, repo)}/git/blobs/{blob}", "html": html}})  # fmt: skip


@routes.post(R + "/check-runs", op=OP + "/check-runs", perm="checks")
def create_check_run(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    assert call.grant is not None
    # https://docs.github.com/en/rest/checks/runs#create-a-check-run: "OAuth apps and
    # personal access tokens (classic) cannot use this endpoint" (GitHub Apps, GITHUB_TOKEN can).
    if not call.grant.app:
        return error(403, "You must authenticate via a GitHub App.")
    data = call.json
    run_id = call.state.next_id()
    output = data.get("output", {})
    run = {"id": run_id, "name": data["name"], "head_sha": data["head_sha"],
           "status": data.get("status", "queued"), "conclusion": data.get("conclusion"),
           "details_url": data.get("details_url"), "external_id": data.get("external_id", ""),
           "url": f"{_base(call, repo)}/check-runs/{run_id}",
           "html_url": f"{call.root}/{repo.full_name}/runs/{run_id}",
           "started_at": now(), "completed_at": now() if data.get("conclusion") else None,
           "output": {"title": output.get("title"), "summary": output.get("summary"),
                      "text": output.get("text"), "annotations_count": 0,
                      "annotations_url": f"{_base(call, repo)}/check-runs/{run_id}/annotations"},
           "app": None, "pull_requests": [], "check_suite": {"id": run_id}}  # fmt: skip
    repo.check_runs.append(run)
    return Reply(201, run)


@routes.get(R + "/commits/<path:ref>/check-runs", op=OP + "/commits/{ref}/check-runs")
def list_check_runs(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    sha = _resolve(repo, call.args["ref"]) or call.args["ref"]
    runs = [r for r in repo.check_runs if r["head_sha"] == sha]
    return Reply(200, {"total_count": len(runs), "check_runs": runs})


@routes.post(R + "/statuses/<sha>", op=OP + "/statuses/{sha}", perm="statuses")
def create_status(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    data = call.json
    assert call.grant is not None
    status_id = call.state.next_id()
    status = {"id": status_id, "sha": call.args["sha"], "state": data["state"],
              "context": data.get("context", "default"), "description": data.get("description"),
              "target_url": data.get("target_url"), "creator": user_json(call, call.grant.account),
              "url": f"{_base(call, repo)}/statuses/{call.args['sha']}", "node_id": "",
              "avatar_url": f"{call.root}/avatars/u/{call.grant.account.id}",
              "created_at": now(), "updated_at": now()}  # fmt: skip
    repo.statuses.append(status)
    return Reply(201, status)


@routes.get(R + "/commits/<path:ref>/statuses", op=OP + "/commits/{ref}/statuses")
def list_statuses(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    sha = _resolve(repo, call.args["ref"]) or call.args["ref"]
    items = [s for s in reversed(repo.statuses) if s["sha"] == sha]
    return paginate(call, items, f"{_base(call, repo)}/commits/{sha}/statuses")


web = RouteTable("web")


@web.get("/<owner>/<repo>/blob/<ref>/<path:path>")
def raw_file(call: Call) -> Reply:
    """What a signed-in viewer's browser gets for ``.../blob/<ref>/<path>?raw=true``.

    A private repository's files show to signed-in readers only; anyone else gets 404,
    as GitHub hides private repositories (docs.github.com/en/repositories/creating-and-
    managing-repositories/about-repositories#about-repository-visibility). The
    emulator takes the reader's token (``Authorization``) for the browser session.
    """
    repo = find_repo(call)
    if repo is not None and repo.private and call.grant is None:
        return Reply(404, {"message": "Not Found"})
    sha = None if repo is None else _resolve(repo, call.args["ref"])
    raw = None if repo is None or sha is None else repo.git.read(sha, call.args["path"])
    return Reply(404, {"message": "Not Found"}) if raw is None else Reply(200, raw)
