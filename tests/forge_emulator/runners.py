"""Self-hosted runner registration on both forges (for the cloud-runner helper)."""

from __future__ import annotations

import base64
import json
import secrets

from .github_issues import OP, R, find_repo
from .router import Call, Reply, RouteTable, error
from .state import now

github = RouteTable("github")
gitlab = RouteTable("gitlab")


def _runner_json(runner: dict[str, object]) -> dict[str, object]:
    # "jobs" is the emulator's own record of what the runner processed (see runner_jobs).
    return {k: v for k, v in runner.items() if k not in ("token", "jobs")}


@github.post(R + "/actions/runners/registration-token",
             op=OP + "/actions/runners/registration-token", perm="administration")  # fmt: skip
def registration_token(call: Call) -> Reply:
    if find_repo(call) is None:
        return error(404, "Not Found")
    return Reply(201, {"token": "R" + secrets.token_hex(14).upper(), "expires_at": now()})


@github.post(R + "/actions/runners/generate-jitconfig",
             op=OP + "/actions/runners/generate-jitconfig", perm="administration")  # fmt: skip
def generate_jitconfig(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    data = call.json
    rid = call.state.next_id()
    labels = [{"id": i, "name": n, "type": "custom"} for i, n in enumerate(data.get("labels", []))]
    runner = {"id": rid, "name": data["name"], "os": "linux", "status": "offline", "busy": False,
              "labels": labels, "runner_group_id": data.get("runner_group_id", 1)}  # fmt: skip
    repo.runners[rid] = runner
    config = base64.b64encode(json.dumps({"runner": rid, "name": data["name"]}).encode()).decode()
    return Reply(201, {"runner": runner, "encoded_jit_config": config})


@github.get(R + "/actions/runners", op=OP + "/actions/runners", perm=None)
def list_runners(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None:
        return error(404, "Not Found")
    runners = list(repo.runners.values())
    return Reply(200, {"total_count": len(runners), "runners": runners})


@github.delete(R + "/actions/runners/<int:rid>", op=OP + "/actions/runners/{runner_id}",
               perm="administration")  # fmt: skip
def delete_runner(call: Call) -> Reply:
    repo = find_repo(call)
    if repo is None or repo.runners.pop(int(call.args["rid"]), None) is None:
        return error(404, "Not Found")
    return Reply(204, None)


@gitlab.post("/user/runners", perm="administration")
def create_user_runner(call: Call) -> Reply:
    pid = call.param("project_id")
    repo = call.state.repo_by_id(str(pid)) if pid else None
    if repo is None:
        return Reply(400, {"message": "project_id is missing or unknown"})
    rid = call.state.next_id()
    tags = call.param("tag_list") or []
    runner = {"id": rid, "description": call.param("description") or "", "active": True,
              "paused": False, "is_shared": False, "runner_type": "project_type",
              "online": False, "status": "never_contacted", "tag_list": tags,
              "token": "glrt-" + secrets.token_hex(12)}  # fmt: skip
    repo.runners[rid] = runner
    return Reply(201, {"id": rid, "token": runner["token"], "token_expires_at": None})


@gitlab.get("/projects/<project>/runners")
def list_project_runners(call: Call) -> Reply:
    repo = call.state.repo_by_id(call.args["project"])
    if repo is None:
        return Reply(404, {"message": "404 Project Not Found"})
    return Reply(200, [_runner_json(r) for r in repo.runners.values()])


@gitlab.delete("/runners/<int:rid>", perm="administration")
def delete_gitlab_runner(call: Call) -> Reply:
    for repo in call.state.repos.values():
        if repo.runners.pop(int(call.args["rid"]), None) is not None:
            return Reply(204, None)
    return Reply(404, {"message": "404 Runner Not Found"})


# https://docs.gitlab.com/api/runners/#list-jobs-processed-by-a-runner: optional `status`
# filter; a token without access to the runner gets 403 (here: no "administration").
# A test puts job dicts ({"id", "status", ...}) in the runner's "jobs" list.
@gitlab.get("/runners/<int:rid>/jobs", perm="administration")
def runner_jobs(call: Call) -> Reply:
    for repo in call.state.repos.values():
        runner = repo.runners.get(int(call.args["rid"]))
        if runner is not None:
            status = call.param("status")
            jobs = [j for j in runner.get("jobs", []) if status is None or j["status"] == status]
            return Reply(200, jobs)
    return Reply(404, {"message": "404 Runner Not Found"})
