"""SSRF forms found in review (issue 13): what inet_aton accepts, and IPv4 inside IPv6."""

from __future__ import annotations

import pytest

from idbatch.images import ImageRefError, check_url

INTERNAL = [
    "http://2130706433/a.jpg",  # 127.0.0.1 as one number
    "http://0177.0.0.1/a.jpg",  # octal
    "http://127.1/a.jpg",  # short form
    "http://0x7f.1/a.jpg",  # hex
    "http://[::127.0.0.1]/a.jpg",  # IPv4-compatible IPv6
    "http://[::ffff:169.254.169.254]/a.jpg",  # IPv4-mapped metadata service
    "http://[64:ff9b::a9fe:a9fe]/a.jpg",  # NAT64 of 169.254.169.254
    "http://[2002:a9fe:a9fe::]/a.jpg",  # 6to4 of 169.254.169.254
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.8/a.jpg",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_forms_are_refused_at_ingest_without_resolving(url: str) -> None:
    with pytest.raises(ImageRefError, match="inside the network"):
        check_url(url, [], resolve=False)


@pytest.mark.parametrize("url", ["http://93.184.216.34/a.jpg", "http://[2606:4700::1111]/a.jpg"])
def test_public_literals_pass(url: str) -> None:
    check_url(url, [], resolve=False)
