"""The few Kubernetes API calls the operator makes itself (kopf does the watching and Events)."""

import json
import os
from typing import Any, cast

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from quanteval import API_GROUP, API_VERSION

PLURAL = "quantevals"
MERGE_PATCH = "application/merge-patch+json"


class JobRefused(Exception):
    """The API server refused to create a Job for good (a quota, an admission webhook, an
    invalid object): 4xx other than a conflict or a rate limit, which a later pass may retry."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except (ValueError, AttributeError):
        return str(error.reason)


class KubeClient:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    @classmethod
    async def connect(cls) -> "KubeClient":
        """In a pod: its ServiceAccount; elsewhere: $KUBECONFIG or ~/.kube/config."""
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config()
        return cls(client.ApiClient())

    async def close(self) -> None:
        await self.api.close()

    async def create_job(self, namespace: str, job: dict[str, Any]) -> bool:
        """Create the Job; False when it exists already (a restarted operator, a lost race).
        JobRefused when the API server refuses it; other errors (5xx, 429) propagate."""
        try:
            await self.batch.create_namespaced_job(namespace, cast(Any, job))
        except ApiException as error:
            if error.status == 409:
                return False
            if error.status is not None and 400 <= error.status < 500 and error.status != 429:
                raise JobRefused(error.status, _api_message(error)) from error
            raise
        return True

    async def pod_create_failures(self, namespace: str) -> dict[str, str]:
        """By Job uid, the message of the Job controller's latest FailedCreate Event in
        `namespace`: why a Job has no pod (a pod quota, a missing priority class, PodSecurity).
        One list for all of a namespace's Jobs."""
        selector = "involvedObject.kind=Job,reason=FailedCreate"
        try:
            events = await self.core.list_namespaced_event(namespace, field_selector=selector)
        except ApiException:  # no permission to list events (an older chart): no reason, no harm
            return {}
        items = sorted(
            events.items,
            key=lambda e: str(e.last_timestamp or e.event_time or e.metadata.creation_timestamp),
        )
        return {str(e.involved_object.uid): str(e.message or "") for e in items}

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """A merge patch of the status subresource: lists in it are replaced whole."""
        try:
            await self.custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, namespace, PLURAL, name, {"status": status},
                **cast(dict[str, Any], {"_content_type": MERGE_PATCH}),
            )  # fmt: skip
        except ApiException as error:
            if error.status != 404:  # deleted meanwhile: nothing to report on
                raise
