"""Stand-ins for the providers: inputs echoed back, plus the computed outputs the program reads.

Only the cloud is mocked. Ids and outputs take the shapes Google's APIs return (resource paths,
members, URIs), so the program's string handling runs on realistic values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pulumi

MOCK_PROJECT_NUMBER = "123456789012"
GET_PROJECT = "gcp:organizations/getProject:getProject"
GET_CLIENT_CONFIG = "gcp:organizations/getClientConfig:getClientConfig"
MOCK_ACCESS_TOKEN = "mock-access-token"  # noqa: S105 - a placeholder the mocks hand out


class CloudMocks(pulumi.runtime.Mocks):
    """Stands in for the providers: echoes inputs and adds the computed outputs the program reads."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        state = {**inputs, **_computed_outputs(args.typ, args.name, inputs)}
        return _resource_id(args.typ, args.name, state), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        return self._data_source(args), []  # (result, no check failures)

    def _data_source(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        token = args.token  # the data source's type token, not a credential
        if token == GET_PROJECT:
            project_id = args.args.get("projectId", "mock-project")
            return {"projectId": project_id, "number": MOCK_PROJECT_NUMBER, "name": project_id}
        if token == GET_CLIENT_CONFIG:
            return {"accessToken": MOCK_ACCESS_TOKEN, "id": "mock", "project": "", "region": "", "zone": ""}
        return {}


def _resource_id(type_: str, name: str, state: Mapping[str, Any]) -> str:
    """The provider's id where the program reads it: a resource path for these types."""
    if type_ == "gcp:kms/keyRing:KeyRing":
        return f"projects/{state['project']}/locations/{state['location']}/keyRings/{state['name']}"
    if type_ == "gcp:kms/cryptoKey:CryptoKey":
        return f"{state['keyRing']}/cryptoKeys/{state['name']}"
    if type_ in {
        "gcp:monitoring/notificationChannel:NotificationChannel",
        "gcp:secretmanager/secret:Secret",
        "gcp:secretmanager/secretVersion:SecretVersion",
    }:
        return str(state["name"])
    return f"{name}-id"


def _computed_outputs(type_: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    pools = f"projects/{MOCK_PROJECT_NUMBER}/locations/global/workloadIdentityPools"
    if type_ == "gcp:serviceaccount/account:Account":
        email = f"{inputs['accountId']}@{inputs['project']}.iam.gserviceaccount.com"
        return {
            "email": email,
            "member": f"serviceAccount:{email}",
            "name": f"projects/{inputs['project']}/serviceAccounts/{email}",
        }
    if type_ == "gcp:iam/workloadIdentityPool:WorkloadIdentityPool":
        return {"name": f"{pools}/{inputs['workloadIdentityPoolId']}"}
    if type_ == "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider":
        pool, provider = inputs["workloadIdentityPoolId"], inputs["workloadIdentityPoolProviderId"]
        return {"name": f"{pools}/{pool}/providers/{provider}"}
    if type_ == "gcp:projects/iAMCustomRole:IAMCustomRole":
        return {"name": f"projects/{inputs['project']}/roles/{inputs['roleId']}"}
    if type_ == "gcp:secretmanager/secret:Secret":
        return {"name": f"projects/{MOCK_PROJECT_NUMBER}/secrets/{inputs['secretId']}"}
    if type_ == "gcp:secretmanager/secretVersion:SecretVersion":
        return {"name": f"{inputs['secret']}/versions/1", "version": "1"}
    if type_ == "docker-build:index:Image":
        # A digest that follows the build inputs, like a real build of changed sources would; `ref`
        # is the first tag with the digest appended (`repo:tag@sha256:…`), as the provider returns it.
        digest = (
            "sha256:" + hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
        )
        return {"digest": digest, "ref": f"{inputs['tags'][0]}@{digest}"}
    if type_ == "gcp:cloudrunv2/service:Service":
        return {"uri": f"https://{inputs['name']}-{MOCK_PROJECT_NUMBER}.{inputs['location']}.run.app"}
    if type_ == "gcp:monitoring/notificationChannel:NotificationChannel":
        return {"name": f"projects/{inputs['project']}/notificationChannels/{name}"}
    if type_ == "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig":
        return {"uptimeCheckId": f"{name}-check-id"}
    if type_ == "gcp:billing/budget:Budget":
        return {"name": f"billingAccounts/{inputs['billingAccount']}/budgets/{name}"}
    return {}
