"""A stateful Azure emulator: Entra ID (OIDC discovery, client-credentials tokens) and ARM.

Served over HTTPS on 127.0.0.1 with a self-signed certificate (azure-core refuses bearer
tokens over plain HTTP, MSAL wants an https authority); tests trust it through
``REQUESTS_CA_BUNDLE``. ARM paths are matched case-insensitively, as ARM does.

Every request must carry the ``api-version`` pinned below for its resource type (the
versions the installed SDKs send; a change of SDK that changes them fails the tests
until the emulator is checked against the new version). Every JSON answer and every
PUT body is deserialised strictly into the SDK's own model (``strict_errors``): a field
the model does not know, or a value of the wrong type, is recorded in ``spec_errors``.

State: VMs with the NICs, public IPs and OS disks they own (``deleteOption``), virtual
networks, long-running operations (``Azure-AsyncOperation``). Faults: synchronous ARM
errors, operations that fail late (leaving the VM in Failed state), 429s, a Spot
eviction. Behaviour follows learn.microsoft.com pages cited inline.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from werkzeug.wrappers import Request, Response

from .http import Server

#: api-version per route kind: what azure-mgmt-compute 39, -network 33 and -resource 26
#: send (the versions their operations pin).
PINNED_API_VERSIONS = {
    "skus": "2021-07-01",
    "vmimage": "2026-04-01",
    "virtualMachines": "2026-04-01",
    "operations": "2026-04-01",
    "virtualNetworks": "2026-03-01",
    "resourcegroups": "2025-04-01",
}

#: VM sizes of the emulated locations: name -> (family, vCPUs, GPUs, architecture, zones)
SIZES: dict[str, tuple[str, int, int, str, list[str]]] = {
    "Standard_D2s_v5": ("standardDSv5Family", 2, 0, "x64", ["1", "2", "3"]),
    "Standard_D4s_v5": ("standardDSv5Family", 4, 0, "x64", ["1", "2", "3"]),
    "Standard_D4ps_v5": ("standardDPSv5Family", 4, 0, "Arm64", ["1", "2"]),
    "Standard_NC4as_T4_v3": ("Standard NCASv3_T4 Family", 4, 1, "x64", ["1", "2", "3"]),
    "Standard_NV36ads_A10_v5": ("StandardNVADSA10v5Family", 36, 1, "x64", []),
    "Standard_NC24ads_A100_v4": ("StandardNCADSA100v4Family", 24, 1, "x64", ["2"]),
}
#: (publisher, offer, sku) -> (versions, architecture), lower-cased keys
IMAGES = {
    ("microsoft-dsvm", "ubuntu-hpc", "2204"): (["22.04.2025101501", "22.04.2026110101"], "x64"),
    ("canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2"): (["22.04.202611010"], "x64"),
    ("canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-arm64"): (
        ["22.04.202611010"],
        "Arm64",
    ),
}


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key), valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "azure-emulator.pem", directory / "azure-emulator.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def strict_errors(model: type, data: Any, path: str = "") -> list[str]:
    """Deserialise ``data`` into the SDK model; every unknown field or bad value is an error."""
    if not isinstance(data, dict):
        return [f"{path or '/'}: {model.__name__} expects an object, got {type(data).__name__}"]
    instance = model(data)
    fields = type(instance)._attr_to_rest_field  # type: ignore[attr-defined]
    known = {f._rest_name: attr for attr, f in fields.items()}
    errors = [
        f"{path}/{key}: not a field of {type(instance).__name__}"
        for key in data
        if key not in known
    ]
    for key, attr in known.items():
        if key not in data:
            continue
        try:
            value = getattr(instance, attr)
        except Exception as exc:  # the SDK's own deserialisation failed
            errors.append(f"{path}/{key}: {type(exc).__name__}: {exc}")
            continue
        errors += _nested_errors(value, data[key], f"{path}/{key}")
    return errors


def _nested_errors(value: Any, raw: Any, path: str) -> list[str]:
    if hasattr(type(value), "_attr_to_rest_field") or hasattr(value, "_attr_to_rest_field"):
        return strict_errors(type(value), raw, path)
    if isinstance(value, list) and isinstance(raw, list):
        return [
            e
            for i, (v, r) in enumerate(zip(value, raw, strict=True))
            for e in _nested_errors(v, r, f"{path}/{i}")
        ]
    if isinstance(raw, (dict, list)) and not isinstance(value, (dict, list)):
        return [f"{path}: expected {type(value).__name__}, got {type(raw).__name__}"]
    scalars = (int, float, str, bool)
    if (
        isinstance(value, scalars)
        and isinstance(raw, scalars)
        and isinstance(value, bool) != isinstance(raw, bool)
    ):
        return [f"{path}: expected {type(value).__name__}, got {raw!r}"]
    return []


def _models() -> dict[str, type]:
    from azure.mgmt.compute import models as compute
    from azure.mgmt.network import models as network
    from azure.mgmt.resource.resources import models as resources

    return {
        "VirtualMachine": compute.VirtualMachine,
        "ResourceSku": compute.ResourceSku,
        "VirtualMachineImage": compute.VirtualMachineImage,
        "VirtualMachineImageResource": compute.VirtualMachineImageResource,
        "VirtualMachineInstanceView": compute.VirtualMachineInstanceView,
        "VirtualNetwork": network.VirtualNetwork,
        "ResourceGroup": resources.ResourceGroup,
    }


def arm_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """ARM's error body (learn.microsoft.com/azure/azure-resource-manager/troubleshooting/common-deployment-errors)."""
    body = {"error": {"code": code, "message": message}}
    return Response(
        json.dumps(body), status, headers=headers or {}, content_type="application/json"
    )


@dataclass
class Fault:
    """An injected fault on PUT virtualMachines (or, with ``status`` 429, on any route)."""

    route: str
    times: int
    status: int
    code: str
    message: str
    late: bool = False
    zone: str | None = None
    spot: bool | None = None
    leaves_vm: bool = False


@dataclass
class Faults:
    pending: list[Fault] = field(default_factory=list)

    def too_many_requests(self, route: str, times: int = 1) -> None:
        """429 with Retry-After, as ARM throttles (azure-resource-manager/management/request-limits-and-throttling)."""
        self.pending.append(Fault(route, times, 429, "TooManyRequests", "Too many requests"))

    def create_error(
        self, code: str, *, status: int = 409, times: int = 1, late: bool = False,
        zone: str | None = None, spot: bool | None = None, leaves_vm: bool = False,
        message: str | None = None,
    ) -> None:  # fmt: skip
        """A VM create refused at once (SkuNotAvailable, OperationNotAllowed: 409) or
        failing late in its operation (AllocationFailed, ZonalAllocationFailed)."""
        self.pending.append(
            Fault(
                "virtualMachines.put",
                times,
                status,
                code,
                message or f"injected {code}",
                late=late,
                zone=zone,
                spot=spot,
                leaves_vm=leaves_vm,
            )  # fmt: skip
        )

    def take(
        self, route: str, zone: str | None = None, spot: bool | None = None, *,
        throttle: bool = False,
    ) -> Fault | None:  # fmt: skip
        for fault in self.pending:
            if (
                fault.route == route
                and (fault.status == 429) == throttle
                and fault.times > 0
                and fault.zone in (None, zone)
                and fault.spot in (None, spot)
            ):
                fault.times -= 1
                return fault
        return None


ARM = re.compile(r"/subscriptions/(?P<sub>[^/]+)(?P<rest>/.*)?", re.I)


@dataclass
class AzureEmulator:
    """Entra ID and ARM on one HTTPS port; ``root`` is the authority and the ARM endpoint."""

    cert: tuple[Path, Path]
    tenant: str = "00000000-0000-0000-0000-00000000a2e5"
    client_id: str = "11111111-2222-3333-4444-555555555555"
    client_secret: str = ""
    subscription: str = "22222222-0000-0000-0000-000000000001"
    resource_groups: set[str] = field(default_factory=lambda: {"ci-runners"})
    location: str = "westeurope"
    faults: Faults = field(default_factory=Faults)
    vms: dict[str, dict[str, Any]] = field(default_factory=dict)
    nics: dict[str, dict[str, Any]] = field(default_factory=dict)
    ips: dict[str, dict[str, Any]] = field(default_factory=dict)
    disks: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    spec_errors: list[str] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    #: The OIDC token a CI job gets (GitHub, GitLab id_tokens), trusted as a federated credential.
    federated_token: str = field(
        default_factory=lambda: "eyJhbGciOiJSUzI1NiJ9.ci." + uuid.uuid4().hex
    )
    #: (route, method, body) of every ARM request.
    calls: list[tuple[str, str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        import ssl

        self.client_secret = self.client_secret or "emulated~" + uuid.uuid4().hex
        self._lock = threading.RLock()
        self._models = _models()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
        self.server = Server(self._handle, ssl_context=context)
        self.root = self.server.root

    def stop(self) -> None:
        self.server.stop()

    def leaks(self) -> dict[str, list[str]]:
        with self._lock:
            return {"vms": sorted(self.vms), "nics": sorted(self.nics), "ips": sorted(self.ips),
                    "disks": sorted(self.disks)}  # fmt: skip

    def requests(self, route: str, method: str = "PUT") -> list[Any]:
        with self._lock:
            return [b for r, m, b in self.calls if r == route and m == method]

    def evict(self, name: str) -> None:
        """Azure evicts a Spot VM: policy Delete deletes the VM and its disks, and what has
        deleteOption Delete; Deallocate keeps them (virtual-machines/spot-vms#eviction-policy)."""
        with self._lock:
            vm = self.vms[name]
            if vm["properties"].get("evictionPolicy") == "Delete":
                self._delete_vm(name, eviction=True)
            else:
                vm["properties"]["provisioningState"] = "Succeeded"
                vm["_power"] = "PowerState/deallocated"

    def guest_shutdown(self, name: str) -> None:
        """The VM's own ``shutdown``: stopped but still allocated, and billed
        (virtual-machines/states-billing)."""
        with self._lock:
            self.vms[name]["_power"] = "PowerState/stopped"

    # -- plumbing --------------------------------------------------------------------------

    def _json(self, body: Any, model: str | None, status: int = 200,
              headers: dict[str, str] | None = None) -> Response:  # fmt: skip
        if model:
            items = (
                body
                if isinstance(body, list)
                else body.get("value", [body])
                if "value" in body
                else [body]
            )
            for item in items:
                self.spec_errors += [f"response {model}{e}" for e in
                                     strict_errors(self._models[model], item)]  # fmt: skip
        return Response(json.dumps(body), status, headers=headers or {},
                        content_type="application/json")  # fmt: skip

    def _handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith(f"/{self.tenant}/"):
            return self._identity(request, path[len(self.tenant) + 1 :])
        if path.startswith("/common/discovery/"):
            self.spec_errors.append("instance discovery was attempted")
            return arm_error(400, "invalid_instance", "not a Microsoft authority")
        match = ARM.fullmatch(path)
        if not match or match["sub"] != self.subscription:
            return arm_error(
                404, "SubscriptionNotFound", f"The subscription '{path}' could not be found."
            )
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            return arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        with self._lock:
            return self._arm(request, match["rest"] or "")

    def _identity(self, request: Request, rest: str) -> Response:
        """The OIDC metadata and token endpoints ClientSecretCredential uses (MSAL)."""
        base = f"{self.root}/{self.tenant}"
        if rest == "/v2.0/.well-known/openid-configuration":
            # identity-platform/v2-protocols-oidc#find-your-apps-openid-configuration-document-uri
            return Response(json.dumps({
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{base}/v2.0", "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "token"],
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
            }), content_type="application/json")  # fmt: skip
        if rest == "/oauth2/v2.0/token" and request.method == "POST":
            # identity-platform/v2-oauth2-client-creds-grant-flow#get-a-token
            form = parse_qs(request.get_data(as_text=True))
            # A client secret, or a federated token as the client assertion (workload
            # identity federation: entra/identity-platform/v2-oauth2-client-creds-grant-flow).
            federated = form.get("client_assertion_type") == [
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            ] and form.get("client_assertion") == [self.federated_token]
            if (
                form.get("grant_type") != ["client_credentials"]
                or form.get("client_id") != [self.client_id]
                or not (form.get("client_secret") == [self.client_secret] or federated)
            ):
                return Response(json.dumps({"error": "invalid_client",
                                            "error_description": "AADSTS7000215: Invalid client "
                                            "secret provided."}), 401,
                                content_type="application/json")  # fmt: skip
            token = "eyJ0eXAiOiJKV1QifQ.emulated." + uuid.uuid4().hex
            self.tokens.add(token)
            return Response(json.dumps({"token_type": "Bearer", "expires_in": 3599,
                                        "ext_expires_in": 3599, "access_token": token}),
                            content_type="application/json")  # fmt: skip
        return arm_error(404, "NotFound", rest)

    def _arm(self, request: Request, rest: str) -> Response:
        routes = [
            (r"/resourcegroups/(?P<rg>[^/]+)", "resourcegroups"),
            (r"/providers/Microsoft\.Compute/skus", "skus"),
            (r"/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/publishers/(?P<pub>[^/]+)"
             r"/artifacttypes/vmimage/offers/(?P<offer>[^/]+)/skus/(?P<sku>[^/]+)/versions"
             r"(?:/(?P<version>[^/]+))?", "vmimage"),
            (r"/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/operations/(?P<op>[^/]+)",
             "operations"),
            (r"/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Network/virtualNetworks"
             r"/(?P<name>[^/]+)", "virtualNetworks"),
            (r"/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/virtualMachines"
             r"(?:/(?P<name>[^/]+))?(?P<view>/instanceView)?", "virtualMachines"),
        ]  # fmt: skip
        for pattern, kind in routes:  # noqa: B007 (the matching kind is used below)
            found = re.fullmatch(pattern, rest, flags=re.I)
            if found:
                break
        else:
            self.spec_errors.append(f"no route for {request.method} {rest}")
            return arm_error(404, "NoRoute", rest)
        version = request.args.get("api-version")
        if version != PINNED_API_VERSIONS[kind]:
            self.spec_errors.append(
                f"{kind}: api-version {version}, pinned {PINNED_API_VERSIONS[kind]}"
            )
        params = found.groupdict()
        body = json.loads(request.get_data() or b"null") if request.method == "PUT" else None
        self.calls.append((kind, request.method, body))
        fault = self.faults.take(kind + (".put" if request.method == "PUT" else ""), throttle=True)
        if fault is not None:
            return arm_error(429, fault.code, fault.message, {"Retry-After": "1"})
        groups = {g.lower() for g in self.resource_groups}
        if kind != "resourcegroups" and params.get("rg") and params["rg"].lower() not in groups:
            return arm_error(404, "ResourceGroupNotFound",
                             f"Resource group '{params['rg']}' could not be found.")  # fmt: skip
        handler = getattr(self, f"_{kind}")
        return handler(request, params, body, None)  # type: ignore[no-any-return]

    def _id(self, rg: str, provider: str, kind: str, name: str) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{rg}/providers/{provider}/{kind}/{name}"

    # -- routes ------------------------------------------------------------------------------

    def _resourcegroups(self, request: Request, params: dict[str, str], *_: Any) -> Response:
        exists = params["rg"].lower() in {g.lower() for g in self.resource_groups}
        if request.method == "HEAD":
            return Response(status=204 if exists else 404)
        if not exists:
            return arm_error(
                404, "ResourceGroupNotFound", f"Resource group '{params['rg']}' could not be found."
            )
        return self._json({"id": f"/subscriptions/{self.subscription}/resourceGroups/{params['rg']}",
                           "name": params["rg"], "type": "Microsoft.Resources/resourceGroups",
                           "location": self.location,
                           "properties": {"provisioningState": "Succeeded"}}, "ResourceGroup")  # fmt: skip

    def _skus(self, request: Request, *_: Any) -> Response:
        wanted = re.fullmatch(r"location eq '([^']+)'", request.args.get("$filter", ""))
        location = wanted[1] if wanted else None
        value = []
        for name, (family, cpus, gpus, arch, zones) in SIZES.items():
            if location not in (None, self.location):
                continue
            value.append({
                "resourceType": "virtualMachines", "name": name, "tier": "Standard",
                "size": name.split("_", 1)[1], "family": family, "locations": [self.location],
                "locationInfo": [{"location": self.location, "zones": zones, "zoneDetails": []}],
                "capabilities": [{"name": "vCPUs", "value": str(cpus)},
                                 {"name": "GPUs", "value": str(gpus)},
                                 {"name": "CpuArchitectureType", "value": arch},
                                 {"name": "LowPriorityCapable", "value": "True"}],
                "restrictions": [],
            })  # fmt: skip
        value.append({"resourceType": "disks", "name": "Premium_LRS", "locations": [self.location],
                      "restrictions": []})  # fmt: skip
        return self._json({"value": value}, "ResourceSku")

    def _vmimage(self, request: Request, params: dict[str, str], *_: Any) -> Response:
        key = (params["pub"].lower(), params["offer"].lower(), params["sku"].lower())
        found = IMAGES.get(key)
        if found is None or (params.get("version") and params["version"] not in found[0]):
            return arm_error(404, "NotFound", "Artifact: VMImage was not found.")
        base = (f"/Subscriptions/{self.subscription}/Providers/Microsoft.Compute/Locations/"
                f"{params['loc']}/Publishers/{params['pub']}/ArtifactTypes/VMImage/Offers/"
                f"{params['offer']}/Skus/{params['sku']}/Versions")  # fmt: skip
        if params.get("version"):
            return self._json({"name": params["version"], "location": params["loc"],
                               "id": f"{base}/{params['version']}",
                               "properties": {"architecture": found[1], "hyperVGeneration": "V2",
                                              "osDiskImage": {"operatingSystem": "Linux"}}},
                              "VirtualMachineImage")  # fmt: skip
        versions = sorted(found[0], reverse=request.args.get("$orderby") == "name desc")
        top = int(request.args.get("$top", len(versions)))
        body = [{"name": v, "location": params["loc"], "id": f"{base}/{v}"} for v in versions[:top]]
        return self._json(body, "VirtualMachineImageResource")

    def _virtualNetworks(
        self, request: Request, params: dict[str, str], body: Any, _: Any
    ) -> Response:
        key = params["name"].lower()
        rid = self._id(params["rg"], "Microsoft.Network", "virtualNetworks", params["name"])
        if request.method == "PUT":
            self.spec_errors += [f"request VirtualNetwork{e}" for e in
                                 strict_errors(self._models["VirtualNetwork"], body)]  # fmt: skip
            subnets = [{**s, "id": f"{rid}/subnets/{s['name']}",
                        "properties": {**s["properties"], "provisioningState": "Succeeded"}}
                       for s in body["properties"]["subnets"]]  # fmt: skip
            self.networks[key] = {**body, "id": rid, "name": params["name"],
                                  "type": "Microsoft.Network/virtualNetworks",
                                  "properties": {**body["properties"], "subnets": subnets,
                                                 "provisioningState": "Succeeded"}}  # fmt: skip
            return self._json(self.networks[key], "VirtualNetwork", 201)
        if key not in self.networks:
            return arm_error(404, "ResourceNotFound",
                             f"The Resource 'Microsoft.Network/virtualNetworks/{params['name']}' "
                             "was not found.")  # fmt: skip
        return self._json(self.networks[key], "VirtualNetwork")

    def _operation(self, status: str, error: dict[str, str] | None = None) -> tuple[str, str]:
        op = uuid.uuid4().hex
        self.operations[op] = {"name": op, "status": status, "startTime": _now(),
                               **({"error": error} if error else {})}  # fmt: skip
        url = (f"{self.root}/subscriptions/{self.subscription}/providers/Microsoft.Compute/"
               f"locations/{self.location}/operations/{op}?api-version="
               f"{PINNED_API_VERSIONS['operations']}")  # fmt: skip
        return op, url

    def _operations(self, request: Request, params: dict[str, str], *_: Any) -> Response:
        """Azure-AsyncOperation status: InProgress once, then the final state
        (azure-resource-manager/management/async-operations)."""
        op = self.operations.get(params["op"])
        if op is None:
            return arm_error(404, "NotFound", "operation")
        answer = dict(op)
        if op["status"] == "InProgress":
            op["status"] = op.pop("_then", "Succeeded")
            if "_error" in op:
                op["error"] = op.pop("_error")
            finish = op.pop("_finish", None)
            if finish:
                finish()
        return Response(json.dumps({k: v for k, v in answer.items() if not k.startswith("_")}),
                        headers={"Retry-After": "1"}, content_type="application/json")  # fmt: skip

    def _virtualMachines(self, request: Request, params: dict[str, str], body: Any,
                         fault: Fault | None) -> Response:  # fmt: skip
        name = params.get("name")
        if name is None:  # list
            value = [self._view(vm) for vm in self.vms.values()
                     if vm["_rg"].lower() == params["rg"].lower()]  # fmt: skip
            return self._json({"value": value}, "VirtualMachine")
        vm = self.vms.get(name)
        if params.get("view"):
            if vm is None:
                return arm_error(
                    404,
                    "ResourceNotFound",
                    f"The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource group '{params['rg']}' was not found.",
                )
            return self._json({"statuses": [
                {"code": "ProvisioningState/succeeded", "level": "Info"},
                {"code": vm.get("_power", "PowerState/running"), "level": "Info"}]},
                "VirtualMachineInstanceView")  # fmt: skip
        if request.method == "GET":
            if vm is None:
                return arm_error(
                    404,
                    "ResourceNotFound",
                    f"The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource group '{params['rg']}' was not found.",
                )
            return self._json(self._view(vm), "VirtualMachine")
        if request.method == "DELETE":
            if vm is None:
                return Response(status=204)
            vm["properties"]["provisioningState"] = "Deleting"
            op, url = self._operation("InProgress")
            self.operations[op]["_finish"] = lambda: self._delete_vm(name)
            return Response(status=202, headers={"Azure-AsyncOperation": url, "Location": url,
                                                 "Retry-After": "1"})  # fmt: skip
        return self._create_vm(params, name, body)

    def _create_vm(self, params: dict[str, str], name: str, body: dict[str, Any]) -> Response:
        self.spec_errors += [f"request VirtualMachine{e}" for e in
                             strict_errors(self._models["VirtualMachine"], body)]  # fmt: skip
        props = body["properties"]
        size = props["hardwareProfile"]["vmSize"]
        zone = (body.get("zones") or [None])[0]
        spot = props.get("priority") == "Spot"
        fault = self.faults.take("virtualMachines.put", zone, spot)
        if fault is not None and not fault.late:
            return arm_error(fault.status, fault.code, fault.message)
        if size not in SIZES:
            return arm_error(
                409,
                "SkuNotAvailable",
                f"The requested VM size '{size}' is not available in location '{body['location']}'.",
            )
        if zone and zone not in SIZES[size][4]:
            return arm_error(
                409,
                "SkuNotAvailable",
                f"The requested VM size {size} is not available in zone {zone}.",
            )
        if spot and props.get("evictionPolicy") not in {"Delete", "Deallocate"}:
            return arm_error(400, "InvalidParameter", "evictionPolicy is required for Spot VMs.")
        linux = props["osProfile"].get("linuxConfiguration", {})
        if linux.get("disablePasswordAuthentication") and not linux.get("ssh", {}).get(
            "publicKeys"
        ):
            return arm_error(
                400,
                "InvalidParameter",
                "Linux VMs with password authentication disabled need an SSH public key.",
            )
        image = props["storageProfile"]["imageReference"]
        found = IMAGES.get(
            (image["publisher"].lower(), image["offer"].lower(), image["sku"].lower())
        )
        if found is None or image["version"] not in found[0]:
            return arm_error(
                404, "PlatformImageNotFound", f"The platform image '{image}' is not available."
            )
        if found[1] != SIZES[size][3]:
            return arm_error(
                400,
                "BadRequest",
                f"The selected VM size '{size}' cannot boot Hypervisor Generation / architecture {found[1]}.",
            )
        rid = self._id(params["rg"], "Microsoft.Compute", "virtualMachines", name)
        stored = json.loads(json.dumps(body))
        stored.update(id=rid, name=name, type="Microsoft.Compute/virtualMachines", _rg=params["rg"])
        stored["properties"].update(provisioningState="Creating", vmId=str(uuid.uuid4()),
                                    timeCreated=_now())  # fmt: skip
        stored["properties"]["osProfile"].pop("customData", None)  # never returned by GET
        self.vms[name] = stored
        self._own_resources(params["rg"], stored)
        failed = fault is not None and fault.late
        op, url = self._operation("InProgress")
        if failed:
            assert fault is not None
            self.operations[op]["_then"] = "Failed"
            self.operations[op]["_error"] = {"code": fault.code, "message": fault.message}

            def fail() -> None:
                if fault.leaves_vm:
                    stored["properties"]["provisioningState"] = "Failed"
                else:
                    self._delete_vm(name)

            self.operations[op]["_finish"] = fail
        else:
            self.operations[op]["_finish"] = lambda: stored["properties"].update(
                provisioningState="Succeeded"
            )
        return self._json(self._view(stored), "VirtualMachine", 201,
                          {"Azure-AsyncOperation": url, "Retry-After": "1"})  # fmt: skip

    def _own_resources(self, rg: str, vm: dict[str, Any]) -> None:
        """VM-managed NICs and public IPs, and the OS disk, with their deleteOptions
        (virtual-machines/delete#delete-a-vm-and-attached-resources)."""
        props = vm["properties"]
        disk = props["storageProfile"]["osDisk"]
        disk_name = disk.get("name") or f"{vm['name']}_OsDisk"
        disk.setdefault("managedDisk", {})["id"] = self._id(
            rg, "Microsoft.Compute", "disks", disk_name
        )
        self.disks[disk_name] = {
            "deleteOption": disk.get("deleteOption", "Detach"),
            "vm": vm["name"],
        }
        references = []
        for config in props["networkProfile"].get("networkInterfaceConfigurations", []):
            nic = config["name"]
            self.nics[nic] = {"deleteOption": config["properties"].get("deleteOption", "Detach"),
                              "vm": vm["name"]}  # fmt: skip
            references.append({"id": self._id(rg, "Microsoft.Network", "networkInterfaces", nic),
                               "properties": {"primary": True,
                                              "deleteOption": self.nics[nic]["deleteOption"]}})  # fmt: skip
            for ip_config in config["properties"]["ipConfigurations"]:
                public = ip_config["properties"].get("publicIPAddressConfiguration")
                if public:
                    self.ips[public["name"]] = {
                        "deleteOption": public.get("properties", {}).get("deleteOption", "Detach"),
                        "vm": vm["name"],
                    }
        props["networkProfile"]["networkInterfaces"] = references

    def _delete_vm(self, name: str, *, eviction: bool = False) -> None:
        self.vms.pop(name, None)
        for store in (self.disks, self.nics, self.ips):
            for key, owned in list(store.items()):
                # An eviction with policy Delete deletes the disks whatever their option.
                if owned["vm"] == name and (owned["deleteOption"] == "Delete"
                                            or (eviction and store is self.disks)):  # fmt: skip
                    del store[key]

    def _view(self, vm: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in vm.items() if not k.startswith("_")}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
