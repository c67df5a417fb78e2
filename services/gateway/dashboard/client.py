"""The dashboard's only way to the data: a small client of the gateway HTTP API.

Why a client and not the store: the dashboard must see exactly what any API user sees
(same token scopes, same validation), so it runs anywhere the API is reachable.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["GatewayApiError", "GatewayClient", "Viewer"]


@dataclass(frozen=True)
class Viewer:
    """Who signed in, as the API sees their token: an operator (the fleet) or the holder
    of some households' token (only those)."""

    operator: bool
    households: tuple[str, ...]


class GatewayApiError(RuntimeError):
    """A non-2xx answer: the status and the API's error body."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(f"{status} {code}: {reason}")
        self.status = status
        self.code = code
        self.reason = reason


class GatewayClient:
    """Typed-enough calls to the gateway API with one bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)
        self._headers = {"Authorization": f"Bearer {token}"}

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        reply = self._http.request(method, path, headers=headers, **kwargs)
        if reply.status_code >= 400:
            try:
                error = reply.json()["error"]
                code, reason = str(error["code"]), str(error["reason"])
            except (ValueError, KeyError, TypeError):
                code, reason = "http_error", reply.text[:500]
            raise GatewayApiError(reply.status_code, code, reason)
        return reply

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _optional(self, path: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            return self._json("GET", path, **kwargs)  # type: ignore[no-any-return]
        except GatewayApiError as error:
            if error.status == 404:
                return None
            raise

    def whoami(self) -> Viewer:
        """Check the token with the API and learn its scope, without knowing the secret.

        ``/households`` refuses a bad or expired token (401, raised); an operator-only
        route then tells an operator (200) from a household (403).
        """
        households = tuple(h["household_id"] for h in self.households())
        try:
            self._request("GET", "/health/pipeline")
        except GatewayApiError as error:
            if error.status != 403:
                raise
            return Viewer(operator=False, households=households)
        return Viewer(operator=True, households=households)

    def households(self) -> list[dict[str, Any]]:
        return self._json("GET", "/households")["households"]  # type: ignore[no-any-return]

    def consumption(
        self, household_id: str, start: dt.datetime, end: dt.datetime, resolution: str
    ) -> dict[str, Any]:
        params = {"start": start.isoformat(), "end": end.isoformat(), "resolution": resolution}
        return self._json(  # type: ignore[no-any-return]
            "GET", f"/households/{household_id}/consumption", params=params
        )

    def forecast(self, household_id: str) -> dict[str, Any] | None:
        return self._optional(f"/households/{household_id}/forecast")

    def anomalies(
        self, household_id: str, start: dt.datetime, end: dt.datetime
    ) -> list[dict[str, Any]]:
        params = {"start": start.isoformat(), "end": end.isoformat()}
        body = self._json("GET", f"/households/{household_id}/anomalies", params=params)
        return body["anomalies"]  # type: ignore[no-any-return]

    def accuracy(self, household_id: str) -> dict[str, Any] | None:
        return self._optional(f"/households/{household_id}/accuracy")

    def forecast_history(
        self, household_id: str, start: dt.datetime, end: dt.datetime, horizon: str = "next"
    ) -> dict[str, Any]:
        params = {"start": start.isoformat(), "end": end.isoformat(), "horizon": horizon}
        return self._json(  # type: ignore[no-any-return]
            "GET", f"/households/{household_id}/forecasts/history", params=params
        )

    def fleet_accuracy(self) -> dict[str, Any]:
        return self._json("GET", "/fleet/accuracy")  # type: ignore[no-any-return]

    def monthly(self, household_id: str, month: str) -> dict[str, Any] | None:
        return self._optional(f"/households/{household_id}/monthly", params={"month": month})

    def monthly_accuracy(self, household_id: str) -> dict[str, Any] | None:
        return self._optional(f"/households/{household_id}/monthly/accuracy")

    def plot(self, path: str) -> bytes:
        return self._request("GET", path).content

    def pipeline_health(self) -> dict[str, Any]:
        return self._json("GET", "/health/pipeline")  # type: ignore[no-any-return]

    def start_replay(self, households: int, speed: str, start: str) -> dict[str, Any]:
        body = {"households": households, "speed": speed, "start": start}
        return self._json("POST", "/pipeline/replay", json=body)  # type: ignore[no-any-return]

    def replay_jobs(self) -> list[dict[str, Any]]:
        return self._json("GET", "/pipeline/replay")["jobs"]  # type: ignore[no-any-return]

    def upload(
        self, name: str, data: bytes, household: str | None = None, utc_offset: str | None = None
    ) -> dict[str, Any]:
        params = {"name": name, **({"household": household} if household else {})}
        params |= {"utc_offset": utc_offset} if utc_offset else {}
        return self._json(  # type: ignore[no-any-return]
            "POST",
            "/pipeline/uploads",
            params=params,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def upload_status(self, key: str) -> dict[str, Any]:
        return self._json("GET", "/pipeline/uploads", params={"key": key})  # type: ignore[no-any-return]
