"""GitLab: user, projects, merge requests, issue/MR notes, commit discussions, statuses,
uploads, repository files, branches and commits (the subset python-gitlab uses here).

GitLab's own rules (roles, protected branches, pipelines, forks, job tokens, pagination)
are modelled in ``gitlab_model``, each with its source; its helpers are re-exported here.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from .github_issues import ancestors
from .gitlab_model import (
    DEVELOPER,
    GUEST,
    MAINTAINER,
    REPORTER,
    GitLabState,
    _404,
    _Routes,
    access_level,
    add_fork_mr,
    add_job_token,
    add_pipeline,
    fork,
    gitlab_state,
    paginate,
    pipelines,
    project,
    protect,
    protected,
    role,
)
from .router import Call, Reply, RouteTable
from .state import Account, Comment, Pull, Repo, now

__all__ = ["DEVELOPER", "GUEST", "MAINTAINER", "REPORTER", "GitLabState", "add_fork_mr",
           "add_job_token", "add_pipeline", "fork", "gitlab_state", "pipelines", "protect",
           "protected", "role", "routes", "web"]  # fmt: skip

P = "/projects/<project>"

routes = _Routes("gitlab")
web = RouteTable("web")

STATE_NAMES = {"open": "opened", "closed": "closed", "merged": "merged"}


def user_json(call: Call, a: Account) -> dict[str, Any]:
    return {"id": a.id, "username": a.login, "name": a.login, "state": "active",
            "bot": a.type == "Bot", "web_url": f"{call.root}/{a.login}"}  # fmt: skip


def project_json(call: Call, repo: Repo) -> dict[str, Any]:
    upstream = gitlab_state(call.state).forked_from.get(repo.id)
    parent = next((r for r in call.state.repos.values() if r.id == upstream), None)
    extra = {"forked_from_project": project_json(call, parent)} if parent is not None else {}
    return extra | {"id": repo.id, "path_with_namespace": repo.full_name, "name": repo.full_name.split("/")[-1],
            "default_branch": repo.default_branch, "web_url": f"{call.root}/{repo.full_name}",
            "visibility": "private" if repo.private else "public"}  # fmt: skip


def note_json(call: Call, c: Comment, noteable: str, iid: int | None) -> dict[str, Any]:
    return {"id": c.id, "body": c.body, "author": user_json(call, c.author), "system": False,
            "created_at": c.created_at, "updated_at": c.updated_at, "noteable_type": noteable,
            "noteable_iid": iid}  # fmt: skip


def mr_json(call: Call, repo: Repo, p: Pull) -> dict[str, Any]:
    source = gitlab_state(call.state).mr_source.get((repo.id, p.number), repo.id)
    return {"id": p.number + 70000, "iid": p.number, "project_id": repo.id, "title": p.title,
            "source_project_id": source, "target_project_id": repo.id,
            "description": p.body, "state": STATE_NAMES[p.state], "source_branch": p.head,
            "target_branch": p.base, "sha": repo.git.refs.get(f"heads/{p.head}", p.head_sha),
            "author": user_json(call, p.author),
            "web_url": f"{call.root}/{repo.full_name}/-/merge_requests/{p.number}"}  # fmt: skip


def _thread(repo: Repo, kind: str, iid: int) -> list[Comment] | None:
    table: dict[int, Any] = repo.pulls if kind == "merge_requests" else repo.issues  # type: ignore[assignment]
    return table[iid].comments if iid in table else None


def _scope_ok(call: Call, perm: str) -> Reply | None:
    assert call.grant is not None
    return None if perm in call.grant.permissions else Reply(403, {"message": "403 Forbidden"})


@routes.get("/user")
def get_user(call: Call) -> Reply:
    assert call.grant is not None
    return Reply(200, user_json(call, call.grant.account))


@routes.get(P)
def get_project(call: Call) -> Reply:
    repo = project(call)
    return _404("Project Not Found") if repo is None else Reply(200, project_json(call, repo))


for kind, noteable in (("merge_requests", "MergeRequest"), ("issues", "Issue")):

    def _make(kind: str = kind, noteable: str = noteable) -> None:
        base = P + f"/{kind}/<int:iid>/notes"
        perm = "pull_requests" if kind == "merge_requests" else "issues"

        @routes.get(base)
        def list_notes(call: Call) -> Reply:
            repo = project(call)
            iid = int(call.args["iid"])
            thread = None if repo is None else _thread(repo, kind, iid)
            if repo is None or thread is None:
                return _404()
            items = [note_json(call, c, noteable, iid) for c in thread]
            if call.request.args.get("sort", "desc") == "desc":
                items.reverse()
            return paginate(call, items, f"{call.api4}/projects/{repo.id}/{kind}/{iid}/notes")

        @routes.post(base, perm=perm)
        def create_note(call: Call) -> Reply:
            repo = project(call)
            iid = int(call.args["iid"])
            thread = None if repo is None else _thread(repo, kind, iid)
            if repo is None or thread is None:
                return _404()
            assert call.grant is not None
            comment = Comment(call.state.next_id(), call.param("body") or "", call.grant.account)
            thread.append(comment)
            return Reply(201, note_json(call, comment, noteable, iid))

        @routes.put(base + "/<int:nid>", perm=perm)
        def update_note(call: Call) -> Reply:
            repo = project(call)
            thread = None if repo is None else _thread(repo, kind, int(call.args["iid"]))
            note = next((c for c in thread or [] if c.id == int(call.args["nid"])), None)
            if note is None:
                return _404()
            note.body, note.updated_at = call.param("body") or "", now()
            return Reply(200, note_json(call, note, noteable, int(call.args["iid"])))

        @routes.delete(base + "/<int:nid>", perm=perm)
        def delete_note(call: Call) -> Reply:
            repo = project(call)
            thread = None if repo is None else _thread(repo, kind, int(call.args["iid"]))
            note = next((c for c in thread or [] if c.id == int(call.args["nid"])), None)
            if thread is None or note is None:
                return _404()
            thread.remove(note)
            return Reply(204, None)

    _make()


@routes.get(P + "/merge_requests/<int:iid>")
def get_mr(call: Call) -> Reply:
    repo = project(call)
    iid = int(call.args["iid"])
    if repo is None or iid not in repo.pulls:
        return _404()
    return Reply(200, mr_json(call, repo, repo.pulls[iid]))


@routes.get(P + "/merge_requests", job_token=True)
def list_mrs(call: Call) -> Reply:
    repo = project(call)
    if repo is None:
        return _404()
    state = call.request.args.get("state", "all")
    source = call.request.args.get("source_branch")
    items = [mr_json(call, repo, p) for p in repo.pulls.values()
             if (state == "all" or STATE_NAMES[p.state] == state) and (not source or p.head == source)]  # fmt: skip
    return paginate(call, items, f"{call.api4}/projects/{repo.id}/merge_requests")


@routes.post(P + "/merge_requests", perm="pull_requests")
def create_mr(call: Call) -> Reply:
    repo = project(call)
    if repo is None:
        return _404()
    data = call.json
    head, base = data["source_branch"], data["target_branch"]
    if f"heads/{head}" not in repo.git.refs:
        return Reply(400, {"message": "Invalid source branch"})
    if any(p.head == head and p.state == "open" for p in repo.pulls.values()):
        return Reply(
            409, {"message": ["Another open merge request already exists for this source branch"]}
        )
    assert call.grant is not None
    pull = Pull(call.state.next_number(repo), data["title"], data.get("description") or "",
                head, base, repo.head_sha(head), call.grant.account)  # fmt: skip
    repo.pulls[pull.number] = pull
    return Reply(201, mr_json(call, repo, pull))


@routes.put(P + "/merge_requests/<int:iid>", perm="pull_requests")
def update_mr(call: Call) -> Reply:
    repo = project(call)
    iid = int(call.args["iid"])
    if repo is None or iid not in repo.pulls:
        return _404()
    pull = repo.pulls[iid]
    data = call.json
    pull.title = data.get("title", pull.title)
    pull.body = data.get("description", pull.body)
    return Reply(200, mr_json(call, repo, pull))


@routes.get(P + "/repository/commits/<sha>/merge_requests")
def mrs_for_commit(call: Call) -> Reply:
    repo = project(call)
    if repo is None:
        return _404()
    sha = call.args["sha"]
    items = [mr_json(call, repo, p) for p in repo.pulls.values()
             if sha in ancestors(repo, repo.git.refs.get(f"heads/{p.head}", p.head_sha))
             and sha not in ancestors(repo, repo.git.refs.get(f"heads/{p.base}", ""))]  # fmt: skip
    return paginate(
        call, items, f"{call.api4}/projects/{repo.id}/repository/commits/{sha}/merge_requests"
    )


def _discussion_json(call: Call, c: Comment) -> dict[str, Any]:
    return {
        "id": c.discussion_id,
        "individual_note": True,
        "notes": [note_json(call, c, "Commit", None)],
    }


@routes.get(P + "/repository/commits/<sha>/discussions")
def list_commit_discussions(call: Call) -> Reply:
    repo = project(call)
    if repo is None:
        return _404()
    sha = call.args["sha"]
    items = [_discussion_json(call, c) for c in repo.commit_comments.get(sha, [])]
    return paginate(
        call, items, f"{call.api4}/projects/{repo.id}/repository/commits/{sha}/discussions"
    )


@routes.post(P + "/repository/commits/<sha>/discussions", perm="contents")
def create_commit_discussion(call: Call) -> Reply:
    repo = project(call)
    if repo is None or call.args["sha"] not in repo.git.commits:
        return _404("Commit Not Found")
    assert call.grant is not None
    cid = call.state.next_id()
    comment = Comment(cid, call.param("body") or "", call.grant.account,
                      discussion_id=hashlib.sha1(str(cid).encode()).hexdigest())  # fmt: skip
    repo.commit_comments.setdefault(call.args["sha"], []).append(comment)
    return Reply(201, _discussion_json(call, comment))


def _discussion_note(call: Call) -> tuple[list[Comment], Comment] | None:
    repo = project(call)
    thread = [] if repo is None else repo.commit_comments.get(call.args["sha"], [])
    for c in thread:
        if c.discussion_id == call.args["did"] and c.id == int(call.args["nid"]):
            return thread, c
    return None


@routes.put(P + "/repository/commits/<sha>/discussions/<did>/notes/<int:nid>", perm="contents")
def update_commit_note(call: Call) -> Reply:
    found = _discussion_note(call)
    if found is None:
        return _404()
    note = found[1]
    note.body, note.updated_at = call.param("body") or "", now()
    return Reply(200, note_json(call, note, "Commit", None))


@routes.delete(P + "/repository/commits/<sha>/discussions/<did>/notes/<int:nid>", perm="contents")
def delete_commit_note(call: Call) -> Reply:
    found = _discussion_note(call)
    if found is None:
        return _404()
    found[0].remove(found[1])
    return Reply(204, None)


def _branches_containing(repo: Repo, sha: str) -> list[str]:
    return sorted(ref.removeprefix("heads/") for ref, tip in repo.git.refs.items()
                  if ref.startswith("heads/") and sha in ancestors(repo, tip))  # fmt: skip


@routes.post(P + "/statuses/<sha>", perm="statuses")
def create_status(call: Call) -> Reply:
    # https://docs.gitlab.com/api/commits/#set-commit-pipeline-status and
    # app/services/ci/create_commit_status_service.rb: the newest pipeline of the sha (of
    # `ref`, of `pipeline_id`) takes the status; without one a new "external" pipeline is
    # made (https://gitlab.com/gitlab-org/gitlab/-/issues/443254).
    repo = project(call)
    sha = call.args["sha"]
    if repo is None or sha not in repo.git.commits:
        return _404("Commit Not Found")
    level = access_level(call)
    if level < DEVELOPER:  # create_commit_status is a Developer ability
        return Reply(403, {"message": "403 Forbidden"})
    ref, wanted = call.param("ref"), call.param("pipeline_id")
    found = [p for p in reversed(pipelines(call.state, repo)) if p["sha"] == sha
             and (ref is None or p["ref"] == ref) and (wanted is None or str(p["id"]) == str(wanted))]  # fmt: skip
    pipeline = found[0] if found else None
    ref = (
        ref
        or (pipeline["ref"] if pipeline else None)
        or next(iter(_branches_containing(repo, sha)), None)
    )
    # A pipeline on a protected ref takes statuses only from users who may push or merge there
    # (Ci::PipelinePolicy :protected_ref; https://gitlab.com/gitlab-org/gitlab/-/issues/213626).
    if ref is not None and level < protected(call.state, repo).get(ref, 0):
        return Reply(403, {"message": "403 Forbidden"})
    if pipeline is None:
        pipeline = {"id": call.state.next_id(), "sha": sha, "ref": ref, "source": "external",
                    "status": "running", "created_at": now()}  # fmt: skip
        pipelines(call.state, repo).append(pipeline)
    status = {"id": call.state.next_id(), "sha": sha, "ref": ref, "status": call.param("state"),
              "name": call.param("name", "default"), "description": call.param("description"),
              "target_url": call.param("target_url"), "pipeline_id": pipeline["id"],
              "created_at": now()}  # fmt: skip
    repo.statuses.append(status)
    return Reply(201, status)


@routes.get(P + "/repository/commits/<sha>/statuses")
def list_statuses(call: Call) -> Reply:
    repo = project(call)
    if repo is None:
        return _404()
    items = [s for s in repo.statuses if s["sha"] == call.args["sha"]]
    return paginate(
        call,
        items,
        f"{call.api4}/projects/{repo.id}/repository/commits/{call.args['sha']}/statuses",
    )


@routes.post(P + "/uploads", perm="contents")
def upload(call: Call) -> Reply:
    repo = project(call)
    if repo is None:
        return _404()
    file = call.request.files["file"]
    data = file.read()
    secret = hashlib.md5(data + str(call.state.next_id()).encode()).hexdigest()
    name = file.filename or "file"
    entry = {"id": call.state.next_id(), "alt": name, "url": f"/uploads/{secret}/{name}",
             "full_path": f"/-/project/{repo.id}/uploads/{secret}/{name}",
             "markdown": f"![{name}](/uploads/{secret}/{name})", "data": data}  # fmt: skip
    repo.uploads.append(entry)
    return Reply(201, {k: v for k, v in entry.items() if k != "data"})


@web.get("/-/project/<int:pid>/uploads/<secret>/<name>")
def raw_upload(call: Call) -> Reply:
    for repo in call.state.repos.values():
        for u in repo.uploads:
            if (
                repo.id == int(call.args["pid"])
                and u["url"] == f"/uploads/{call.args['secret']}/{call.args['name']}"
            ):
                return Reply(200, u["data"])
    return Reply(404, {"message": "404 Not found"})


def _ref_sha(repo: Repo, ref: str) -> str | None:
    return repo.git.refs.get(f"heads/{ref}") or (ref if ref in repo.git.commits else None)


@routes.get(P + "/repository/files/<path:path>/raw", job_token=True)
def raw_file(call: Call) -> Reply:
    repo = project(call)
    ref = call.request.args.get("ref") or (repo.default_branch if repo else "")
    sha = None if repo is None else _ref_sha(repo, ref)
    raw = None if repo is None or sha is None else repo.git.read(sha, call.args["path"])
    return _404("File Not Found") if raw is None else Reply(200, raw)


@routes.get(P + "/repository/files/<path:path>")
def get_file(call: Call) -> Reply:
    repo = project(call)
    ref = call.request.args.get("ref") or (repo.default_branch if repo else "")
    sha = None if repo is None else _ref_sha(repo, ref)
    raw = None if repo is None or sha is None else repo.git.read(sha, call.args["path"])
    if repo is None or raw is None:
        return _404("File Not Found")
    return Reply(200, {"file_name": call.args["path"].rsplit("/", 1)[-1], "file_path": call.args["path"],
                       "size": len(raw), "encoding": "base64", "content": base64.b64encode(raw).decode(),
                       "ref": ref, "blob_id": repo.git.put_blob(raw), "last_commit_id": sha})  # fmt: skip


def _branch_json(call: Call, repo: Repo, name: str) -> dict[str, Any]:
    sha = repo.git.refs[f"heads/{name}"]
    return {"name": name, "merged": False, "protected": name in protected(call.state, repo), "default": name == repo.default_branch,
            "commit": {"id": sha, "short_id": sha[:8], "message": repo.git.commits[sha]["message"]},
            "web_url": f"{call.root}/{repo.full_name}/-/tree/{name}"}  # fmt: skip


@routes.get(P + "/repository/branches/<path:branch>")
def get_branch(call: Call) -> Reply:
    repo = project(call)
    if repo is None or f"heads/{call.args['branch']}" not in repo.git.refs:
        return _404("Branch Not Found")
    return Reply(200, _branch_json(call, repo, call.args["branch"]))


@routes.post(P + "/repository/branches", perm="contents")
def create_branch(call: Call) -> Reply:
    repo = project(call)
    if repo is None:
        return _404()
    name, ref = call.param("branch") or "", call.param("ref") or ""
    if f"heads/{name}" in repo.git.refs:
        return Reply(400, {"message": "Branch already exists"})
    sha = _ref_sha(repo, ref)
    if sha is None:
        return Reply(400, {"message": "Invalid reference name"})
    repo.git.refs[f"heads/{name}"] = sha
    return Reply(201, _branch_json(call, repo, name))


@routes.get(P + "/repository/tree")
def repository_tree(call: Call) -> Reply:
    repo = project(call)
    ref = call.request.args.get("ref") or (repo.default_branch if repo else "")
    sha = None if repo is None else _ref_sha(repo, ref)
    if repo is None or sha is None:
        return _404("Tree Not Found")
    files = repo.git.flat_files(repo.git.commits[sha]["tree"])
    if str(call.request.args.get("recursive", "")).lower() not in ("true", "1"):
        files = {p: b for p, b in files.items() if "/" not in p}
    items = [{"id": blob, "name": path.rsplit("/", 1)[-1], "type": "blob", "path": path,
              "mode": "100644"} for path, blob in sorted(files.items())]  # fmt: skip
    return paginate(call, items, f"{call.api4}/projects/{repo.id}/repository/tree")


@routes.post(P + "/repository/commits", perm="contents")
def create_commit(call: Call) -> Reply:
    repo = project(call)
    if repo is None:
        return _404()
    data = call.json
    branch = data["branch"]
    start = data.get("start_sha") or (
        _ref_sha(repo, data["start_branch"]) if data.get("start_branch") else None
    )  # fmt: skip
    if f"heads/{branch}" not in repo.git.refs:
        if start is None:
            return Reply(
                400, {"message": "You can only create or edit files when you are on a branch"}
            )
        repo.git.refs[f"heads/{branch}"] = start
    files: dict[str, bytes] = {}
    for action in data.get("actions", []):
        content = action.get("content", "")
        raw = base64.b64decode(content) if action.get("encoding") == "base64" else content.encode()
        exists = repo.git.read(branch, action["file_path"]) is not None
        if action["action"] == "create" and exists:
            message = f"A file with this name already exists: {action['file_path']}"
            return Reply(400, {"message": message})
        if action["action"] == "update" and not exists:
            message = f"A file with this name doesn't exist: {action['file_path']}"
            return Reply(400, {"message": message})
        files[action["file_path"]] = raw
    sha = repo.git.commit_files(branch, files, data["commit_message"])
    return Reply(201, {"id": sha, "short_id": sha[:8], "title": data["commit_message"].splitlines()[0],
                       "message": data["commit_message"], "created_at": now(),
                       "web_url": f"{call.root}/{repo.full_name}/-/commit/{sha}"})  # fmt: skip
