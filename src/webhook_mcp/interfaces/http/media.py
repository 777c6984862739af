"""Request media types: routes that take JSON say so, and refuse bodies that are not declared JSON
(a form post or ``text/plain`` is what a browser page can send across origins without asking)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response

JSON_MEDIA_TYPE = "application/json"


def json_content_type_refusal(headers: Headers) -> Response | None:
    """A 415 unless ``Content-Type`` is ``application/json``, with no parameter or a UTF-8 charset
    (RFC 8259: JSON exchanged between systems is UTF-8)."""
    declared = headers.get("content-type", "")
    media_type, *parameters = (part.strip().lower() for part in declared.split(";"))
    charsets = [
        value.strip('"') for name, _, value in (p.partition("=") for p in parameters) if name.strip() == "charset"
    ]
    if media_type == JSON_MEDIA_TYPE and all(charset in ("utf-8", "utf8") for charset in charsets):
        return None
    shown = f"Content-Type {declared!r}" if declared else "no Content-Type"
    message = f"{shown} is not accepted: send the body as JSON with 'Content-Type: application/json'"
    return JSONResponse(
        {"error": {"code": "unsupported_media_type", "message": message}},
        status_code=415,
        headers={"accept-post": JSON_MEDIA_TYPE},
    )
