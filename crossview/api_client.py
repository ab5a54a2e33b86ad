"""A small client of the hub's REST API (docs: `cloud.api`), for the operator commands of the CLI.

    >>> client = HubClient("http://127.0.0.1:8080")                  # doctest: +SKIP
    >>> client.login("admin", "secret")                              # doctest: +SKIP
    >>> identity = client.enroll([Path("visitor.jpg")], display_name="visitor")  # doctest: +SKIP

Every failure is a `HubApiError` with one line: the hub's own ``detail`` for a 4xx/5xx, or what
went wrong on the way (hub down, timeout, not JSON).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from models.errors import CrossviewError

IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
# A request sent on a pooled connection just as the hub closes it for idleness reads "connection reset by
# peer". The hub closes one idle 8 s (cloud.api.server.KEEP_ALIVE_S, above httpx's default of 5 s); this
# client stops reusing one after 2 s, so that a slow, loaded process never comes near the hub's close.
KEEPALIVE_EXPIRY_S = 2.0


def http_client(base_url: str, *, timeout_s: float, **kwargs: Any) -> httpx.Client:
    """An httpx client for the hub's REST API that never reuses a connection the hub may be closing
    (httpx's default pool sizes; `kwargs` go to httpx.Client)."""
    return httpx.Client(base_url=base_url, timeout=timeout_s, **kwargs,
                        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20,
                                            keepalive_expiry=KEEPALIVE_EXPIRY_S))


class HubApiError(CrossviewError):
    """A request to the hub's REST API failed; the message says why in one line."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HubClient:
    """Operator session against one hub. `token` skips `login` (a token from an earlier login)."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout_s: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise HubApiError(f"hub URL: expected http(s)://HOST:PORT, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._http = http_client(self.base_url, timeout_s=timeout_s)
        self.token = token

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise HubApiError(f"the hub at {self.base_url} did not answer {method} {path} in time") from None
        except httpx.HTTPError as exc:
            raise HubApiError(f"cannot reach the hub at {self.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise HubApiError(f"{method} {path}: {response.status_code} {_detail(response)}", response.status_code)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            raise HubApiError(f"{method} {path}: the hub answered {response.status_code} without JSON") from None

    def login(self, username: str, password: str) -> str:
        body = self._json("POST", "/api/login", json={"username": username, "password": password})
        self.token = str(body["token"])
        return self.token

    def enroll(self, photos: Sequence[Path], *, display_name: str = "",
               watchlist_threshold: float | None = None) -> dict[str, Any]:
        data: dict[str, str] = {"display_name": display_name}
        if watchlist_threshold is not None:
            data["watchlist_threshold"] = str(watchlist_threshold)
        return self._json("POST", "/api/identities", data=data, files=_files(photos))

    def enroll_from_sighting(self, sighting_id: int, *, display_name: str = "",
                             watchlist_threshold: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"sighting_id": sighting_id, "display_name": display_name}
        if watchlist_threshold is not None:
            body["watchlist_threshold"] = watchlist_threshold
        return self._json("POST", "/api/identities/from-sighting", json=body)

    def search(self, *, photos: Sequence[Path] = (), sighting_id: int | None = None, identity_id: str | None = None,
               top_k: int = 20, deadline_s: float = 10.0, text: str | None = None,
               filters: Mapping[str, bool | str | None] | None = None, camera_ids: Sequence[str] = (),
               sites: Sequence[str] = ()) -> dict[str, Any]:
        """`text` and/or attribute `filters` ({"male": False, "upper_colour": "red", ...}): a search by
        description; `camera_ids` and `sites` narrow any search."""
        data: dict[str, Any] = {"top_k": str(top_k), "deadline_s": str(deadline_s)}
        if sighting_id is not None:
            data["sighting_id"] = str(sighting_id)
        if identity_id is not None:
            data["identity_id"] = identity_id
        if text is not None:
            data["text"] = text
        for key, value in (filters or {}).items():
            if value is not None:
                data[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if camera_ids:
            data["camera_ids"] = list(camera_ids)
        if sites:
            data["sites"] = list(sites)
        return self._json("POST", "/api/search", data=data, files=_files(photos) if photos else None,
                          timeout=deadline_s + 30)

    def watch(self, identity_id: str, threshold: float) -> dict[str, Any]:
        return self._json("PUT", f"/api/watchlist/{_segment(identity_id)}", json={"threshold": threshold})

    def unwatch(self, identity_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/api/watchlist/{_segment(identity_id)}")

    def watchlist(self) -> list[dict[str, Any]]:
        return self._json("GET", "/api/watchlist")

    def sightings(self, identity_id: str, limit: int = 200) -> list[dict[str, Any]]:
        return self._json("GET", f"/api/identities/{_segment(identity_id)}/sightings", params={"limit": limit})

    # -- operators and the audit trail (admins)

    def operators(self) -> list[dict[str, Any]]:
        return self._json("GET", "/api/operators")

    def add_operator(self, username: str, password: str, role: str = "operator") -> dict[str, Any]:
        return self._json("POST", "/api/operators", json={"username": username, "password": password, "role": role})

    def set_operator_disabled(self, username: str, disabled: bool) -> dict[str, Any]:
        return self._json("POST", f"/api/operators/{_segment(username)}/{'disable' if disabled else 'enable'}")

    def reset_password(self, username: str, password: str) -> dict[str, Any]:
        return self._json("PUT", f"/api/operators/{_segment(username)}/password", json={"password": password})

    def set_role(self, username: str, role: str) -> dict[str, Any]:
        return self._json("PUT", f"/api/operators/{_segment(username)}/role", json={"role": role})

    def audit(self, *, before_id: int | None = None, limit: int = 100,
              **filters: str | float | None) -> list[dict[str, Any]]:
        """Audit lines, newest first; `filters`: username, action, target, since_s, until_s."""
        params = {k: v for k, v in {**filters, "before_id": before_id, "limit": limit}.items() if v is not None}
        return self._json("GET", "/api/audit", params=params)

    def audit_export(self, fmt: str = "csv", **filters: str | float | None) -> Iterator[bytes]:
        """The export's bytes, in chunks as they arrive."""
        params = {k: v for k, v in {**filters, "format": fmt}.items() if v is not None}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            with self._http.stream("GET", "/api/audit/export", params=params, headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise HubApiError(f"audit export: {response.status_code} {_detail(response)}",
                                      response.status_code)
                yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise HubApiError(f"audit export from {self.base_url} broke: {exc}") from None

    def alerts(self, after_id: int = 0) -> Iterator[dict[str, Any]]:
        """Alerts as they arrive (server-sent events), after `after_id`, until the caller stops."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            with self._http.stream("GET", "/api/alerts/stream", params={"after_id": after_id}, headers=headers,
                                   timeout=httpx.Timeout(30.0, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise HubApiError(f"alerts: {response.status_code} {_detail(response)}", response.status_code)
                event = "message"
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line[5:].strip())
                        if event == "session_ended":  # logged out, disabled or a new password (issue 12)
                            raise HubApiError(f"alerts: the session ended: {data.get('detail', '')}", 401)
                        yield data
                    elif not line:
                        event = "message"
        except httpx.HTTPError as exc:
            raise HubApiError(f"alert stream from {self.base_url} broke: {exc}") from None


def _files(photos: Sequence[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    files = []
    for photo in photos:
        path = Path(photo)
        if not path.is_file():
            raise HubApiError(f"photo {path}: no such file")
        kind = IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
        files.append(("photos", (path.name, path.read_bytes(), kind)))
    return files


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str):
        return detail
    if detail is not None:
        return json.dumps(detail)[:300]
    lines = response.text.strip().splitlines()
    return lines[0][:300] if lines else response.reason_phrase
