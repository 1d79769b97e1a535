"""The node agent's API client: JSON requests and watches through the official client's transport,
and the timestamps the API expects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import kubernetes
import kubernetes.client
import kubernetes.client.rest
import kubernetes.config

JSON = dict[str, Any]


def timestamp() -> str:
    """Now, as the API's timestamps (seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_timestamp() -> str:
    """Now, as the API's MicroTime (a Lease's renewTime)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        try:
            message = str(json.loads(body).get("message", body))
        except (ValueError, AttributeError):
            message = body
        super().__init__(f"{method} {path}: HTTP {status}: {message}")


class Api:
    """JSON requests through the official client's transport (auth and TLS from a kubeconfig).

    Objects stay plain JSON dicts: the agent never depends on the client's models matching the
    server's version.
    """

    def __init__(self, kubeconfig: str) -> None:
        cfg = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        cfg.no_proxy = "127.0.0.1,localhost,::1"
        self._client = kubernetes.client.ApiClient(cfg)

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None,
        body: JSON | None,
        content_type: str,
        timeout: float | tuple[float, float],
    ) -> kubernetes.client.rest.RESTResponse:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, sent, _ = self._client.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return self._client.call_api(
            method, url, header_params=headers, body=sent, _request_timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: JSON | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> JSON:
        resp = self._send(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        data = resp.read()
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        if not 200 <= resp.status < 300:
            raise ApiError(method, path, resp.status, text)
        result: JSON = json.loads(text) if text else {}
        return result

    def get_or_none(self, path: str) -> JSON | None:
        try:
            return self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def watch(self, path: str, query: dict[str, str], timeout_s: int) -> Iterator[JSON]:
        """Yield watch events until the server ends the watch (after ``timeout_s``)."""
        query = {**query, "watch": "true", "timeoutSeconds": str(timeout_s)}
        resp = self._send(
            "GET",
            path,
            query=query,
            body=None,
            content_type="application/json",
            timeout=(10.0, timeout_s + 30.0),
        )
        raw = resp.response
        try:
            if not 200 <= resp.status < 300:
                raise ApiError("GET", path, resp.status, raw.data.decode("utf-8", "replace"))
            buffer = b""
            for chunk in raw.stream(amt=None, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event: JSON = json.loads(line)
                        yield event
        finally:
            raw.release_conn()
