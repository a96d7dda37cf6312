"""The image gateway: serves local image files under signed, expiring URLs.

URL-only providers (AceData) cannot read our disk. The gateway hands them a URL valid
for a few minutes, naming exactly one file; nothing else on the disk is reachable and a
leaked URL dies quickly. In production, S3 presigned URLs play the same role.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from idbatch.images import ImageRefError, verify_token


def create_app(secret: bytes) -> Starlette:
    async def serve(request: Request) -> Response:
        try:
            path = verify_token(request.path_params["token"], secret)
        except ImageRefError as exc:
            return PlainTextResponse(f"forbidden: {exc}", status_code=403)
        if not path.is_file():
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path)

    return Starlette(routes=[Route("/i/{token}", serve)])
