"""The image gateway: serves local image files under signed, expiring URLs.

URL-only providers (AceData) cannot read our disk. The gateway hands them a URL valid
for a few minutes, naming exactly one file. A valid signature is not enough: the file
must also lie under one of the gateway's ``roots`` (symlinks resolved) and be an image
(by its bytes, not its name), so a signing mistake elsewhere can never turn the gateway
into a way to read ``/etc/passwd`` or the PII key. In production, S3 presigned URLs play
the same role.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from idbatch.images import ImageRefError, header, verify_token

MAX_BYTES = 32 * 1024 * 1024


def create_app(secret: bytes, roots: list[Path] | tuple[Path, ...]) -> Starlette:
    allowed = tuple(Path(r).resolve() for r in roots)

    def readable(path: Path) -> bytes | None:
        real = path.resolve()
        if not any(real.is_relative_to(root) for root in allowed) or not real.is_file():
            return None
        if real.stat().st_size > MAX_BYTES:
            return None
        data = real.read_bytes()
        try:
            header(data)  # an image, by its bytes, under the pixel cap
        except ImageRefError:
            return None
        return data

    async def serve(request: Request) -> Response:
        try:
            path = verify_token(request.path_params["token"], secret)
        except ImageRefError as exc:
            return PlainTextResponse(f"forbidden: {exc}", status_code=403)
        try:
            data = readable(path)
        except OSError:
            data = None
        if data is None:  # one answer for missing, outside the roots, or not an image
            return PlainTextResponse("not found", status_code=404)
        return Response(data, media_type="application/octet-stream")

    return Starlette(routes=[Route("/i/{token}", serve)])
