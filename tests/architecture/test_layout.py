"""The layout rules of issue 10 that import-linter cannot check."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("idbatch", "workers", "producers", "db", "dispatch", "app", "simulator")
MAX_LINES = 400


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for package in PRODUCT
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_every_package_is_found_by_packaging() -> None:
    """A new top-level package must be in the wheel (a hand-kept list once dropped one)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    roots = {p.removesuffix("*") for p in include}
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert on_disk <= roots
    assert set(config["tool"]["importlinter"]["root_packages"]) == roots


def test_layers_contract_names_every_product_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    named = {m.strip() for layer in layers for m in layer.split("|")}
    assert named == {"app", "producers", "workers", "dispatch", "db", "idbatch"}
