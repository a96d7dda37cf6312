"""Image references: validation at ingest, loading and hand-off at call time.

A manifest names an image as a local path (resolved against the manifest's folder), an
``http(s)://`` URL or an ``s3://`` URL. URLs that point inside the network are refused:
a provider fetching ``http://169.254.169.254/`` on our behalf is a textbook SSRF, and a
job that names one is rejected with the reason instead of being sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import ipaddress
import socket
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from PIL import Image, UnidentifiedImageError

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "BMP"})
MIN_SIDE_PX = 15
MAX_SIDE_PX = 8192
# A card photo needs a few megapixels; the cap is checked on the header, before any pixel
# is decoded, so a 27 KB PNG claiming 15000x15000 (a decompression bomb) costs nothing.
MAX_PIXELS = 40_000_000
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = b"\xff\xda"


class ImageRefError(ValueError):
    """An image reference or image that cannot be sent; the message is the reason."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    size: int


def classify_ref(ref: str) -> str:
    """``local``, ``http`` or ``s3``; raises ImageRefError for anything else."""
    if not ref:
        raise ImageRefError("empty image reference")
    if ":" not in ref:
        return "local"  # no scheme possible; skips urlsplit on the ingest hot path
    scheme = urlsplit(ref).scheme.lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme == "s3":
        return "s3"
    if scheme == "file":
        raise ImageRefError("file:// references are not accepted: use a path relative to the manifest")
    if scheme == "" or (len(scheme) == 1 and ref[1:3] in (":\\", ":/")):
        return "local"
    raise ImageRefError(f"unsupported scheme {scheme!r}: use a path, http(s):// or s3://")


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_V4_COMPAT = ipaddress.IPv6Network("::/96")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries: mapped, compatible, NAT64, 6to4, Teredo."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or ip in _NAT64_LOCAL or (ip in _V4_COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _is_internal(addr: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_v4(ip)
        if embedded is not None:
            ip = embedded
    return not ip.is_global or ip.is_multicast


@lru_cache(maxsize=4096)
def _literal_address(host: str) -> str | None:
    """The address a host names literally, read as the resolver would.

    ``inet_aton`` accepts ``2130706433``, ``0177.0.0.1``, ``127.1`` and ``0x7f.1`` for
    127.0.0.1; a check that only understands dotted quads lets them through.

    Cached: a pure function of the name, and a batch's cards mostly share a few hosts;
    ``ip_address`` raising ``ValueError`` for every ordinary name was ~3.5 % of a
    1,000-card request's samples (``bench/profile_api.py --batch 1000``).
    """
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host) and host[0].isdigit():
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_url(url: str, allowed_private_hosts: list[str], *, resolve: bool) -> None:
    """Refuse URLs a provider must not be sent to fetch.

    At ingest (``resolve=False``) only literal addresses and obvious names are checked,
    to keep ingest at tens of thousands of rows a second; at call time (``resolve=True``)
    the name is resolved and every address it has must be public.
    """
    parts = urlsplit(url)
    # As an HTTP client reads the host: percent-escapes decoded (``%31%36%39.254.169.254``)
    # and the root's trailing dot dropped (``169.254.169.254.``, ``localhost.``), so an
    # internal address cannot pass ingest dressed up and be refused only at call time.
    host = unquote(parts.hostname or "").lower().rstrip(".")
    if not host:
        raise ImageRefError("URL has no host")
    if parts.username or parts.password:
        raise ImageRefError("URL carries credentials")
    if host in allowed_private_hosts:
        return
    if host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
        raise ImageRefError(f"URL host {host!r} is internal; refusing to hand it to a provider")
    literal = _literal_address(host)
    if literal is not None:
        if _is_internal(literal):
            raise ImageRefError(f"URL points inside the network ({host}); refusing (SSRF)")
        return
    if resolve:
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise ImageRefError(f"URL host {host!r} does not resolve") from exc
        for info in infos:
            addr = str(info[4][0])
            if _is_internal(addr):
                raise ImageRefError(f"URL host {host!r} resolves to internal address {addr} (SSRF)")


# One reason for every local reference that cannot be used, whatever the cause (missing,
# not a regular file, unreadable, or outside the folders images may come from): a
# submitter learns nothing about which files exist on the worker.
UNREADABLE = "image not readable (missing, not a file, or outside the manifest's folder)"


def local_ref_problem(ref: str) -> str | None:
    """What is wrong with a local reference on its face (ingest: no disk access)."""
    path = Path(ref)
    if path.is_absolute() or (len(ref) > 2 and ref[1] == ":"):
        return "absolute paths are not accepted: use a path relative to the manifest"
    return None


def resolve_local(ref: str, base_dir: Path | None, roots: tuple[Path, ...] = ()) -> Path:
    """The file a relative reference names, if it stays inside the manifest's folder.

    Resolved with symlinks followed, so ``../`` and a link pointing out are both caught;
    ``roots`` are further folders an operator allows (``IDBATCH_IMAGE_ROOTS``).
    """
    if local_ref_problem(ref) is not None or base_dir is None:
        raise ImageRefError(UNREADABLE)
    path = (base_dir / ref).resolve()
    allowed = (base_dir.resolve(), *(r.resolve() for r in roots))
    if not any(path.is_relative_to(root) for root in allowed):
        raise ImageRefError(UNREADABLE)
    return path


def header(data: bytes) -> tuple[str, int, int]:
    """Format and size read from the header only (no pixel is decoded).

    The one place images are opened for checking: ingest, call time and the provider
    limits (``idbatch.providers.limits``) all read it here, with the same bounds.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (width, height) = str(im.format), im.size
    except Image.DecompressionBombError as exc:
        raise ImageRefError(f"image has too many pixels (over {MAX_PIXELS})") from exc
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombWarning) as exc:
        raise ImageRefError("not a readable image (unrecognized or corrupt data)") from exc
    if width * height > MAX_PIXELS:
        raise ImageRefError(f"image is {width}x{height} px, over {MAX_PIXELS} pixels")
    return fmt, width, height


def _complete(data: bytes, fmt: str) -> bool:
    """Whether the file is whole: a truncated upload must not be sent (and billed).

    A JPEG's last scan must be followed by its end-of-image marker (bytes after it are
    allowed, as cameras append them; scan data never holds a marker, thanks to byte
    stuffing). PNG and BMP are checked by Pillow's ``verify`` (chunk CRCs, declared
    sizes). Neither decodes the pixels.
    """
    if fmt == "JPEG":
        return data.rfind(_JPEG_EOI) > data.rfind(_JPEG_SOS) > 0
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except Exception:  # noqa: BLE001 - Pillow raises many types for a broken file
        return False
    return True


def inspect(data: bytes, max_bytes: int) -> ImageInfo:
    """Check an image's bytes: present, small enough, a supported format, sane sides, whole."""
    if not data:
        raise ImageRefError("image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageRefError(f"image is {len(data)} bytes, over the {max_bytes}-byte limit")
    fmt, width, height = header(data)
    if fmt not in SUPPORTED_FORMATS:
        raise ImageRefError(f"image format {fmt} not supported (JPEG, PNG, BMP)")
    if min(width, height) < MIN_SIDE_PX or max(width, height) > MAX_SIDE_PX:
        raise ImageRefError(f"image is {width}x{height} px, outside {MIN_SIDE_PX}..{MAX_SIDE_PX}")
    if not _complete(data, fmt):
        raise ImageRefError("image is truncated or corrupt")
    return ImageInfo(fmt, width, height, len(data))


def read_local(path: Path, max_bytes: int) -> bytes:
    try:
        if not path.is_file():
            raise ImageRefError(UNREADABLE)
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageRefError(f"image is {size} bytes, over the {max_bytes}-byte limit")
        return path.read_bytes()
    except OSError as exc:
        raise ImageRefError(UNREADABLE) from exc


# --- image gateway: short-lived signed URLs for local files --------------------------


def sign_path(path: Path, secret: bytes, ttl_s: int, now: float | None = None) -> str:
    """A token naming ``path`` until ``now + ttl_s``, verifiable without any state."""
    expires = int((now if now is not None else time.time()) + ttl_s)
    raw_path = str(path.resolve()).encode()
    mac = hmac.new(secret, raw_path + b"\x00" + str(expires).encode(), hashlib.sha256).digest()
    blob = base64.urlsafe_b64encode(raw_path).decode().rstrip("=")
    sig = base64.urlsafe_b64encode(mac[:18]).decode()
    return f"{expires}.{sig}.{blob}"


def verify_token(token: str, secret: bytes, now: float | None = None) -> Path:
    try:
        expires_s, sig, blob = token.split(".", 2)
        raw_path = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
        expires = int(expires_s)
    except ValueError as exc:
        raise ImageRefError("malformed token") from exc
    mac = hmac.new(secret, raw_path + b"\x00" + str(expires).encode(), hashlib.sha256).digest()
    # bytes, not str: compare_digest refuses non-ASCII text, and a token is attacker input
    if not hmac.compare_digest(base64.urlsafe_b64encode(mac[:18]), sig.encode("utf-8", "replace")):
        raise ImageRefError("bad signature")
    if (now if now is not None else time.time()) > expires:
        raise ImageRefError("expired")
    return Path(raw_path.decode())


def gateway_url(base_url: str, path: Path, secret: bytes, ttl_s: int) -> str:
    return f"{base_url.rstrip('/')}/i/{quote(sign_path(path, secret, ttl_s), safe='.')}"
