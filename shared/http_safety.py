"""Safe HTTP answers for both APIs (ingest and gateway): no sniffing, no HTML in JSON.

Why: error bodies echo what the client sent (a household id, a field value, a header)
so that the reason is actionable. An attacker can make that echo carry
``<script>...</script>``; a browser that sniffs the content type, or a log viewer or
dashboard that renders the reason as HTML, would then run it. Two defences, applied to
every response of both apps:

* :class:`SecurityHeadersMiddleware` adds ``X-Content-Type-Options: nosniff`` (so a JSON
  body is never rendered as HTML), plus ``Cache-Control: no-store`` on error answers;
* :class:`SafeJSONResponse` writes ``<``, ``>``, ``&``, U+2028 and U+2029 as ``\\uXXXX``
  escapes: the parsed JSON is unchanged (a client reads the same strings) but the raw
  bytes hold no markup. Echoed values are also bounded by :func:`shown` (reasons stay
  short, however large the input).

Example:
    >>> SafeJSONResponse({"reason": "<script>"}).body
    b'{"reason":"\\\\u003cscript\\\\u003e"}'
"""

from __future__ import annotations

from typing import Any, Final

from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SECURITY_HEADERS", "SafeJSONResponse", "SecurityHeadersMiddleware", "shown"]

SECURITY_HEADERS: Final = {"x-content-type-options": "nosniff"}
"""Headers every response of both APIs carries."""

_ESCAPES: Final = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}

_MAX_SHOWN: Final = 200


def shown(value: Any, limit: int = _MAX_SHOWN) -> str:
    """A bounded ``repr`` of client input for a reason (``...`` marks a cut)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SafeJSONResponse(JSONResponse):
    """A JSON response whose bytes hold no HTML-significant character (see module doc)."""

    def render(self, content: Any) -> bytes:
        text = super().render(content).decode("utf-8")
        return text.translate(_ESCAPES).encode("utf-8")


class SecurityHeadersMiddleware:
    """Pure ASGI middleware: :data:`SECURITY_HEADERS` on every response (errors included),
    and ``Cache-Control: no-store`` on 4xx/5xx so an echoed input is never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if message.get("status", 200) >= 400 and "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
