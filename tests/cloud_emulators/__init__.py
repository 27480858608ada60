"""Stateful loopback emulators of the clouds' APIs that the official SDKs talk HTTP to.

``gcp`` serves Compute Engine v1 (and an OAuth token endpoint), routing and validating
every request and response against the Compute v1 discovery document shipped in
google-api-python-client (``discovery``). ``azure`` serves Azure Resource Manager's
compute, network and resource endpoints and the Entra ID (OIDC) token endpoints.
Faults are injected through each emulator's ``faults``; ``leaks()`` lists what a
scenario left behind.
"""
