"""A stateful Compute Engine v1 emulator, and the OAuth token endpoint ADC uses.

Routes come from the discovery document (``discovery.route``): a path the real API
does not have, or a query parameter the method does not declare, answers 400 and is
recorded in ``spec_errors``. Request bodies and every JSON answer are validated
against the document's schemas; tests assert ``spec_errors == []``.

State: instances with their boot disks and ephemeral external addresses, zone
operations (PENDING -> RUNNING -> DONE, advanced by each ``zoneOperations.get``), and
the fixed catalogue of regions, zones, machine and accelerator types and images below.
Behaviour follows the Compute Engine docs cited inline. Faults (``Faults``) make
inserts fail late with a given error code, answer 429, or preempt a spot VM.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

from werkzeug.wrappers import Request, Response

from . import discovery
from .http import Server

API = "compute/v1/"
ROOT = "https://www.googleapis.com/" + API  # selfLinks name the real host, as GCP does

REGIONS = {
    "us-central1": ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"],
    "europe-west4": ["europe-west4-a", "europe-west4-b"],
}
#: machine type -> (vCPUs, memory MB, built-in accelerators, architecture, zones or None=all)
MACHINE_TYPES: dict[str, tuple[int, int, list[tuple[str, int]], str, set[str] | None]] = {
    "e2-standard-2": (2, 8192, [], "X86_64", None),
    "n2-standard-4": (4, 16384, [], "X86_64", None),
    "n1-standard-8": (8, 30720, [], "X86_64", None),
    "n1-standard-32": (32, 122880, [], "X86_64", None),
    "t2a-standard-4": (4, 16384, [], "ARM64", {"us-central1-a", "us-central1-b"}),
    "g2-standard-8": (8, 32768, [("nvidia-l4", 1)], "X86_64", None),
    "a2-highgpu-1g": (12, 87040, [("nvidia-tesla-a100", 1)], "X86_64", {"us-central1-c"}),
}
#: accelerator type -> zones offering it
ACCELERATOR_TYPES = {
    "nvidia-tesla-t4": {"us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"},
    "nvidia-l4": {"us-central1-a", "us-central1-b", "us-central1-c"},
    "nvidia-tesla-a100": {"us-central1-c"},
}
#: (project, family) -> (image name, architecture)
IMAGE_FAMILIES = {
    ("deeplearning-platform-release", "common-cu128-ubuntu-2204-nvidia-570"): (
        "common-cu128-ubuntu-2204-nvidia-570-v20261101",
        "X86_64",
    ),
    ("ubuntu-os-cloud", "ubuntu-2204-lts"): ("ubuntu-2204-jammy-v20261101", "X86_64"),
    ("ubuntu-os-cloud", "ubuntu-2204-lts-arm64"): ("ubuntu-2204-jammy-arm64-v20261101", "ARM64"),
}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _short(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def google_error(status: int, message: str, reason: str, domain: str = "global") -> Response:
    """An error in Google's JSON error format (cloud.google.com/apis/design/errors)."""
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
        }
    }
    return Response(json.dumps(body), status, content_type="application/json")


@dataclass
class Fault:
    """An injected fault: which method, where, how often, and the error."""

    method: str  # discovery id, e.g. compute.instances.insert
    times: int
    status: int = 429
    code: str = ""
    message: str = ""
    zone: str | None = None
    late: bool = False  # an operation that fails after running (insert)
    leaves_instance: bool = False  # the failed insert leaves a VM and disk behind
    polls: int = 1  # operation polls before it is DONE


@dataclass
class Faults:
    """Faults to inject, matched in order; each fires ``times`` times."""

    pending: list[Fault] = field(default_factory=list)

    def too_many_requests(self, method: str, times: int = 1) -> None:
        """HTTP 429 rateLimitExceeded (cloud.google.com/compute/api-quota)."""
        self.pending.append(Fault(method, times, 429, "rateLimitExceeded", "Rate Limit Exceeded"))

    def operation_error(
        self,
        code: str,
        *,
        zone: str | None = None,
        times: int = 1,
        status: int = 503,
        message: str | None = None,
        leaves_instance: bool = False,
        polls: int = 1,
    ) -> None:
        """An insert whose operation finishes with ``error.errors[0].code == code``.

        ZONE_RESOURCE_POOL_EXHAUSTED arrives this way with httpErrorStatusCode 503, and
        GPU QUOTA_EXCEEDED with 403 (cloud.google.com/compute/docs/troubleshooting/
        troubleshooting-vm-creation).
        """
        self.pending.append(
            Fault(
                "compute.instances.insert",
                times,
                status,
                code,
                message or f"injected {code}",
                zone,
                late=True,
                leaves_instance=leaves_instance,
                polls=polls,
            )
        )

    def take(self, method: str, zone: str | None) -> Fault | None:
        for fault in self.pending:
            if fault.method == method and fault.times > 0 and fault.zone in (None, zone):
                fault.times -= 1
                return fault
        return None


@dataclass
class GcpEmulator:
    """The emulator's state and server. ``root`` is what CML_NB_GCP_ENDPOINT points at."""

    project: str = "cml-nb-test"
    client_email: str = "runner-launcher@cml-nb-test.iam.gserviceaccount.com"
    public_key_pem: bytes = b""
    faults: Faults = field(default_factory=Faults)
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    disks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)  # external IP -> instance key
    operations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    spec_errors: list[str] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    request_ids: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: (method id, path parameters, JSON body) of every routed request, in order.
    calls: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    #: Workload identity federation: the CI's OIDC token, the provider's audience, and the
    #: federated tokens the STS endpoint handed out (only good for impersonation).
    oidc_token: str = field(default_factory=lambda: "eyJhbGciOiJSUzI1NiJ9.ci." + uuid.uuid4().hex)
    audience: str = (
        "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/"
        "github/providers/github"
    )
    federated: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = itertools.count(1000)
        self._ips = itertools.count(10)
        self._pending: dict[tuple[str, str], tuple[Fault | None, dict[str, Any]]] = {}
        self.server = Server(self._handle)
        self.root = self.server.root
        self.token_uri = f"{self.root}/token"

    def stop(self) -> None:
        self.server.stop()

    def requests(self, method_id: str) -> list[tuple[dict[str, str], Any]]:
        """(path parameters, body) of each request that reached ``method_id``."""
        with self._lock:
            return [(p, b) for m, p, b in self.calls if m == method_id]

    def leaks(self) -> dict[str, list[str]]:
        """What is left: VMs, disks, external addresses (empty lists: nothing leaked)."""
        with self._lock:
            return {
                "instances": sorted("/".join(k) for k in self.instances),
                "disks": sorted("/".join(k) for k in self.disks),
                "addresses": sorted(self.addresses),
            }

    # -- events a test can cause -----------------------------------------------------------

    def preempt(self, zone: str, name: str) -> None:
        """Compute Engine reclaims a spot VM: its instanceTerminationAction decides.

        DELETE deletes the VM (and its autoDelete disk); STOP leaves it TERMINATED, disk
        and all (cloud.google.com/compute/docs/instances/spot#preemption).
        """
        self._terminate_action(zone, name)

    def guest_shutdown(self, zone: str, name: str) -> None:
        """The VM's own ``shutdown``: it stops (TERMINATED), keeping its boot disk; the
        ephemeral address is released (compute/docs/instances/stop-start-instance)."""
        with self._lock:
            vm = self.instances[(zone, name)]
            vm["status"] = "TERMINATED"
            for config in vm["networkInterfaces"][0].get("accessConfigs", []):
                self.addresses.pop(config.pop("natIP", ""), None)

    def run_out(self, zone: str, name: str) -> None:
        """The VM's maxRunDuration ends: the same termination action applies
        (cloud.google.com/compute/docs/instances/limit-vm-runtime)."""
        self._terminate_action(zone, name)

    def _terminate_action(self, zone: str, name: str) -> None:
        with self._lock:
            vm = self.instances[(zone, name)]
            action = vm.get("scheduling", {}).get("instanceTerminationAction", "STOP")
            if action == "DELETE":
                self._remove(zone, name)
            else:
                vm["status"] = "TERMINATED"
                for config in vm["networkInterfaces"][0].get("accessConfigs", []):
                    self.addresses.pop(config.pop("natIP", ""), None)

    # -- HTTP --------------------------------------------------------------------------------

    def _json(self, body: dict[str, Any], schema: str | None, status: int = 200) -> Response:
        if schema:
            self.spec_errors += [f"response {e}" for e in discovery.validate(schema, body)]
        return Response(json.dumps(body), status, content_type="application/json")

    def _handle(self, request: Request) -> Response:
        if request.path == "/token":
            return self._token(request)
        if request.path == "/v1/token":
            return self._sts(request)
        if request.path.endswith(":generateAccessToken"):
            return self._impersonate(request)
        if not self._authorised(request):
            return google_error(401, "Request had invalid authentication credentials.",
                                "authError", "global")  # fmt: skip
        try:
            method, params = discovery.route(request.method, request.path)
        except LookupError as exc:
            self.spec_errors.append(str(exc))
            return google_error(404, str(exc), "notFound")
        unknown = set(request.args) - method.parameters
        if unknown:
            self.spec_errors.append(f"{method.id}: undeclared query parameters {sorted(unknown)}")
            return google_error(400, f"unknown parameters {sorted(unknown)}", "badRequest")
        body: Any = None
        if method.request:
            body = json.loads(request.get_data() or b"{}")
            self.spec_errors += [f"request {e}" for e in discovery.validate(method.request, body)]
        with self._lock:
            self.calls.append((method.id, params, body))
        fault = self.faults.take(method.id, params.get("zone"))
        if fault is not None and not fault.late:
            return google_error(fault.status, fault.message, fault.code, "usageLimits")
        handler = getattr(self, "_" + method.id.split(".", 1)[1].replace(".", "_"), None)
        if handler is None:
            self.spec_errors.append(f"{method.id}: not emulated")
            return google_error(501, f"{method.id} is not emulated", "notImplemented")
        with self._lock:
            answer: Response = handler(params, request.args, body, fault)
        if method.response and answer.status_code < 300:
            payload = json.loads(answer.get_data())
            self.spec_errors += [
                f"response {e}" for e in discovery.validate(method.response, payload)
            ]
        return answer

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        token = header.removeprefix("Bearer ")
        if token in self.tokens:
            return True
        from google.auth import jwt

        try:  # a self-signed JWT, as google-auth makes for service accounts
            claims = jwt.decode(token, certs=self.public_key_pem.decode(), verify=True)
        except ValueError:
            return False
        return bool(claims.get("iss") == self.client_email)

    def _token(self, request: Request) -> Response:
        """OAuth 2.0 JWT bearer grant (RFC 7523), as oauth2.googleapis.com/token answers."""
        from google.auth import jwt

        form = parse_qs(request.get_data(as_text=True))
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return Response(json.dumps({"error": "unsupported_grant_type"}), 400,
                            content_type="application/json")  # fmt: skip
        try:
            claims = jwt.decode(
                form["assertion"][0], certs=self.public_key_pem.decode(), audience=self.token_uri
            )
        except (ValueError, KeyError):
            return Response(json.dumps({"error": "invalid_grant"}), 400,
                            content_type="application/json")  # fmt: skip
        if claims.get("iss") != self.client_email:
            return Response(json.dumps({"error": "invalid_grant"}), 400,
                            content_type="application/json")  # fmt: skip
        token = "ya29.emulated-" + uuid.uuid4().hex
        self.tokens.add(token)
        return Response(json.dumps({"access_token": token, "expires_in": 3600,
                                    "token_type": "Bearer"}), content_type="application/json")  # fmt: skip

    def _sts(self, request: Request) -> Response:
        """Security Token Service token exchange (RFC 8693), as sts.googleapis.com/v1/token
        answers workload identity federation (cloud.google.com/iam/docs/reference/sts/rest)."""
        form = parse_qs(request.get_data(as_text=True))
        if (
            form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:token-exchange"]
            or form.get("subject_token") != [self.oidc_token]
            or form.get("audience") != [self.audience]
        ):
            return Response(json.dumps({"error": "invalid_grant"}), 400,
                            content_type="application/json")  # fmt: skip
        token = "ya29.federated-" + uuid.uuid4().hex
        self.federated.add(token)
        return Response(json.dumps({
            "access_token": token, "issued_token_type":
            "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer",
            "expires_in": 3600}), content_type="application/json")  # fmt: skip

    def _impersonate(self, request: Request) -> Response:
        """IAM Credentials generateAccessToken: the federated token becomes the service
        account's (cloud.google.com/iam/docs/reference/credentials/rest)."""
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer not in self.federated or self.client_email not in request.path:
            return google_error(403, "Permission 'iam.serviceAccounts.getAccessToken' denied",
                                "forbidden")  # fmt: skip
        token = "ya29.impersonated-" + uuid.uuid4().hex
        self.tokens.add(token)
        later = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
        expires = later.isoformat()
        return Response(json.dumps({"accessToken": token,
                                    "expireTime": expires.replace("+00:00", "Z")}),
                        content_type="application/json")  # fmt: skip

    # -- catalogue ---------------------------------------------------------------------------

    def _link(self, path: str) -> str:
        return f"{ROOT}projects/{self.project}/{path}"

    def _regions_get(self, params: dict[str, str], *_: Any) -> Response:
        region = params["region"]
        if region not in REGIONS:
            return google_error(404, f"The resource 'projects/{self.project}/regions/{region}' "
                                "was not found", "notFound")  # fmt: skip
        return Response(json.dumps({
            "kind": "compute#region", "id": "1000", "name": region, "status": "UP",
            "selfLink": self._link(f"regions/{region}"),
            "zones": [self._link(f"zones/{z}") for z in REGIONS[region]],
        }), content_type="application/json")  # fmt: skip

    def _machineTypes_get(self, params: dict[str, str], *_: Any) -> Response:
        zone, name = params["zone"], params["machineType"]
        found = MACHINE_TYPES.get(name)
        if found is None or (found[4] is not None and zone not in found[4]):
            return google_error(404, f"The resource 'projects/{self.project}/zones/{zone}/"
                                f"machineTypes/{name}' was not found", "notFound")  # fmt: skip
        cpus, memory, accelerators, architecture, _ = found
        return Response(json.dumps({
            "kind": "compute#machineType", "id": "2000", "name": name, "zone": zone,
            "guestCpus": cpus, "memoryMb": memory, "architecture": architecture,
            "accelerators": [{"guestAcceleratorType": a, "guestAcceleratorCount": n}
                             for a, n in accelerators],
            "selfLink": self._link(f"zones/{zone}/machineTypes/{name}"),
        }), content_type="application/json")  # fmt: skip

    def _acceleratorTypes_get(self, params: dict[str, str], *_: Any) -> Response:
        zone, name = params["zone"], params["acceleratorType"]
        if zone not in ACCELERATOR_TYPES.get(name, set()):
            return google_error(404, f"The resource 'projects/{self.project}/zones/{zone}/"
                                f"acceleratorTypes/{name}' was not found", "notFound")  # fmt: skip
        return Response(json.dumps({
            "kind": "compute#acceleratorType", "id": "3000", "name": name, "zone": zone,
            "maximumCardsPerInstance": 8,
            "selfLink": self._link(f"zones/{zone}/acceleratorTypes/{name}"),
        }), content_type="application/json")  # fmt: skip

    def _image(self, project: str, name: str, architecture: str, family: str) -> dict[str, Any]:
        return {
            "kind": "compute#image", "id": "4000", "name": name, "family": family,
            "architecture": architecture, "status": "READY", "diskSizeGb": "50",
            "selfLink": f"{ROOT}projects/{project}/global/images/{name}",
        }  # fmt: skip

    def _images_getFromFamily(self, params: dict[str, str], *_: Any) -> Response:
        found = IMAGE_FAMILIES.get((params["project"], params["family"]))
        if found is None:
            return google_error(404, f"The resource 'projects/{params['project']}/global/images/"
                                f"family/{params['family']}' was not found", "notFound")  # fmt: skip
        body = self._image(params["project"], found[0], found[1], params["family"])
        return Response(json.dumps(body), content_type="application/json")

    def _images_get(self, params: dict[str, str], *_: Any) -> Response:
        for (project, family), (name, architecture) in IMAGE_FAMILIES.items():
            if project == params["project"] and name == params["image"]:
                body = self._image(project, name, architecture, family)
                return Response(json.dumps(body), content_type="application/json")
        return google_error(404, f"The resource 'projects/{params['project']}/global/images/"
                            f"{params['image']}' was not found", "notFound")  # fmt: skip

    def _resolve_image(self, source: str) -> tuple[str, str] | None:
        parts = source.split("projects/", 1)[-1].split("/")
        if len(parts) == 5 and parts[3] == "family":
            found = IMAGE_FAMILIES.get((parts[0], parts[4]))
            return (found[0], found[1]) if found else None
        for (project, _), (name, architecture) in IMAGE_FAMILIES.items():
            if len(parts) == 4 and parts[0] == project and parts[3] == name:
                return name, architecture
        return None

    # -- instances ----------------------------------------------------------------------------

    def _operation(self, zone: str, kind: str, target: str, polls: int) -> dict[str, Any]:
        name = f"operation-{uuid.uuid4().hex[:20]}"
        op = {
            "kind": "compute#operation", "id": str(next(self._ids)), "name": name,
            "operationType": kind, "status": "RUNNING" if polls else "DONE",
            "progress": 0 if polls else 100, "insertTime": _now(), "startTime": _now(),
            "zone": self._link(f"zones/{zone}"), "targetLink": target,
            "selfLink": self._link(f"zones/{zone}/operations/{name}"),
            "user": self.client_email,
        }  # fmt: skip
        self.operations[(zone, name)] = op
        return op

    def _invalid(self, message: str) -> Response:
        return google_error(400, message, "invalid")

    def _instances_insert(
        self, params: dict[str, str], args: Any, body: dict[str, Any], fault: Fault | None
    ) -> Response:
        zone = params["zone"]
        request_id = args.get("requestId")
        if request_id and request_id in self.request_ids:  # idempotent (requestId docs)
            return self._json(self.request_ids[request_id], "Operation")
        name = body.get("name", "")
        if (zone, name) in self.instances:
            return google_error(409, f"The resource 'projects/{self.project}/zones/{zone}/"
                                f"instances/{name}' already exists", "alreadyExists")  # fmt: skip
        machine = _short(body.get("machineType", ""))
        offered = MACHINE_TYPES.get(machine)
        if offered is None or (offered[4] is not None and zone not in offered[4]):
            return self._invalid(f"Invalid value for field 'resource.machineType': "
                                 f"'{body.get('machineType')}'. Machine type does not exist.")  # fmt: skip
        accelerators = body.get("guestAccelerators", [])
        for accelerator in accelerators:
            if zone not in ACCELERATOR_TYPES.get(_short(accelerator["acceleratorType"]), set()):
                return self._invalid("Invalid value for field 'resource.guestAccelerators[0]."
                                     "acceleratorType'")  # fmt: skip
        scheduling = body.get("scheduling", {})
        gpus = accelerators or offered[2]
        # Instances with guest accelerators do not support live migration (gpus/create-vm-with-gpus).
        if gpus and scheduling.get("onHostMaintenance", "MIGRATE") != "TERMINATE":
            return self._invalid("Instances with guest accelerators do not support live "
                                 "migration.")  # fmt: skip
        spot = scheduling.get("provisioningModel") == "SPOT"
        if spot and scheduling.get("automaticRestart", True):
            return self._invalid("Scheduling must have automaticRestart false for SPOT VMs.")
        if (
            scheduling.get("instanceTerminationAction") == "DELETE"
            and not spot
            and not (scheduling.get("maxRunDuration") or scheduling.get("terminationTime"))
        ):  # limit-vm-runtime: DELETE on a standard VM needs a run duration or time
            return self._invalid("instanceTerminationAction DELETE needs maxRunDuration.")
        (boot,) = [d for d in body.get("disks", []) if d.get("boot")]
        image = self._resolve_image(boot.get("initializeParams", {}).get("sourceImage", ""))
        if image is None:
            return google_error(404, "The resource "
                                f"'{boot['initializeParams'].get('sourceImage')}' was not found",
                                "notFound")  # fmt: skip
        if image[1] != offered[3]:
            return self._invalid(f"The image architecture {image[1]} does not match the "
                                 f"machine type architecture {offered[3]}.")  # fmt: skip
        target = self._link(f"zones/{zone}/instances/{name}")
        op = self._operation(zone, "insert", target, fault.polls if fault else 1)
        if request_id:
            self.request_ids[request_id] = op
        creates = fault is None or fault.leaves_instance
        if creates:
            self._create(zone, name, body, boot, spot, failed=fault is not None)
        self._pending[(zone, op["name"])] = (fault, op)
        return self._json(op, "Operation")

    def _create(
        self, zone: str, name: str, body: dict[str, Any], boot: dict[str, Any], spot: bool,
        *, failed: bool,
    ) -> None:  # fmt: skip
        disk_name = boot.get("initializeParams", {}).get("diskName", name)
        disk_link = self._link(f"zones/{zone}/disks/{disk_name}")
        self.disks[(zone, disk_name)] = {"name": disk_name, "users": [name]}
        interfaces = json.loads(json.dumps(body.get("networkInterfaces", [])))
        for index, interface in enumerate(interfaces):
            interface.setdefault("network", self._link("global/networks/default"))
            interface["name"] = f"nic{index}"
            interface["networkIP"] = f"10.128.0.{next(self._ips)}"
            for config in interface.get("accessConfigs", []):
                config["natIP"] = f"34.1.2.{next(self._ips)}"
                config["kind"] = "compute#accessConfig"
                if not failed:
                    self.addresses[config["natIP"]] = f"{zone}/{name}"
        scheduling = dict(body.get("scheduling", {}))
        vm = {
            **{k: v for k, v in body.items() if k not in {"disks", "networkInterfaces"}},
            "kind": "compute#instance", "id": str(next(self._ids)),
            "creationTimestamp": _now(), "status": "TERMINATED" if failed else "RUNNING",
            "zone": self._link(f"zones/{zone}"),
            "machineType": self._link(f"zones/{zone}/machineTypes/{_short(body['machineType'])}"),
            "selfLink": self._link(f"zones/{zone}/instances/{name}"),
            "networkInterfaces": interfaces, "scheduling": scheduling,
            "disks": [{"kind": "compute#attachedDisk", "boot": True, "index": 0,
                       "autoDelete": bool(boot.get("autoDelete")), "source": disk_link,
                       "deviceName": "persistent-disk-0", "type": "PERSISTENT",
                       "mode": "READ_WRITE"}],
        }  # fmt: skip
        if spot:
            vm["scheduling"]["preemptible"] = False
        self.instances[(zone, name)] = vm

    def _zoneOperations_get(self, params: dict[str, str], *_: Any) -> Response:
        key = (params["zone"], params["operation"])
        op = self.operations.get(key)
        if op is None:
            return google_error(404, "operation not found", "notFound")
        fault, _ = self._pending.get(key, (None, op))
        if op["status"] != "DONE":
            remaining = op.setdefault("_polls", fault.polls if fault else 1)
            if remaining <= 1:
                op.pop("_polls")
                op.update(status="DONE", progress=100, endTime=_now())
                if fault is not None:
                    op["httpErrorStatusCode"] = fault.status
                    op["httpErrorMessage"] = {503: "SERVICE UNAVAILABLE", 403: "FORBIDDEN"}.get(
                        fault.status, "ERROR"
                    )
                    op["error"] = {"errors": [{"code": fault.code, "message": fault.message}]}
            else:
                op["_polls"] = remaining - 1
        return self._json({k: v for k, v in op.items() if not k.startswith("_")}, "Operation")

    def _zoneOperations_wait(self, params: dict[str, str], *rest: Any) -> Response:
        """Returns when the operation is DONE (or after about 2 minutes): here at once,
        advancing it through its remaining polls (zoneOperations/wait)."""
        key = (params["zone"], params["operation"])
        while key in self.operations and self.operations[key]["status"] != "DONE":
            self._zoneOperations_get(params, *rest)
        return self._zoneOperations_get(params, *rest)

    def _instances_get(self, params: dict[str, str], *_: Any) -> Response:
        vm = self.instances.get((params["zone"], params["instance"]))
        if vm is None:
            return google_error(404, f"The resource 'projects/{self.project}/zones/"
                                f"{params['zone']}/instances/{params['instance']}' was not found",
                                "notFound")  # fmt: skip
        return self._json(vm, "Instance")

    def _matches(self, vm: dict[str, Any], expression: str) -> bool:
        """The filter subset cml-nb sends: ``labels.K:*`` and ``labels.K = "V"``
        (cloud.google.com/compute/docs/reference/rest/v1/instances/aggregatedList)."""
        expression = expression.strip()
        if not expression:
            return True
        labels = vm.get("labels", {})
        if expression.endswith(":*") and expression.startswith("labels."):
            return expression[len("labels.") : -2] in labels
        key, sep, value = expression.partition("=")
        if sep and key.strip().startswith("labels."):
            return bool(labels.get(key.strip()[len("labels.") :]) == value.strip().strip('"'))
        self.spec_errors.append(f"filter not emulated: {expression!r}")
        return False

    def _instances_aggregatedList(self, params: dict[str, str], args: Any, *_: Any) -> Response:
        items: dict[str, Any] = {}
        for region_zones in REGIONS.values():
            for zone in region_zones:
                found = [
                    vm for (z, _), vm in sorted(self.instances.items())
                    if z == zone and self._matches(vm, args.get("filter", ""))
                ]  # fmt: skip
                items[f"zones/{zone}"] = (
                    {"instances": found}
                    if found
                    else {"warning": {"code": "NO_RESULTS_ON_PAGE",
                                      "message": "There are no results for scope"}}
                )  # fmt: skip
        body = {"kind": "compute#instanceAggregatedList", "id": "projects/" + self.project,
                "items": items, "selfLink": self._link("aggregated/instances")}  # fmt: skip
        return self._json(body, "InstanceAggregatedList")

    def _remove(self, zone: str, name: str) -> None:
        vm = self.instances.pop((zone, name))
        for disk in vm["disks"]:
            if disk.get("autoDelete"):
                self.disks.pop((zone, _short(disk["source"])), None)
        for interface in vm["networkInterfaces"]:
            for config in interface.get("accessConfigs", []):
                self.addresses.pop(config.get("natIP", ""), None)

    def _instances_delete(self, params: dict[str, str], args: Any, *_: Any) -> Response:
        zone, name = params["zone"], params["instance"]
        request_id = args.get("requestId")
        if request_id and request_id in self.request_ids:
            return self._json(self.request_ids[request_id], "Operation")
        if (zone, name) not in self.instances:
            return google_error(404, f"The resource 'projects/{self.project}/zones/{zone}/"
                                f"instances/{name}' was not found", "notFound")  # fmt: skip
        self._remove(zone, name)
        op = self._operation(zone, "delete", self._link(f"zones/{zone}/instances/{name}"), 0)
        op.update(endTime=_now())
        if request_id:
            self.request_ids[request_id] = op
        return self._json(op, "Operation")
