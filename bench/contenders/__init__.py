"""The contenders, loaded lazily by name (LiteLLM is imported only where it runs)."""

from __future__ import annotations

import importlib
import importlib.util

from bench.contenders.base import Contender

#: name -> (module, class, the bench-only package it needs)
CONTENDERS: dict[str, tuple[str, str, str | None]] = {
    "raw_sdk": ("bench.contenders.raw_sdk", "RawSdk", None),
    "tenacity_pybreaker": ("bench.contenders.tenacity_pybreaker", "TenacityPybreaker", "pybreaker"),
    "litellm_router": ("bench.contenders.litellm_router", "LiteLLMRouter", "litellm"),
    "bulwark": ("bench.contenders.bulwark_gateway", "BulwarkGateway", None),
}

LABELS: dict[str, str] = {
    "raw_sdk": "raw openai SDK",
    "tenacity_pybreaker": "tenacity + pybreaker",
    "litellm_router": "LiteLLM Router",
    "bulwark": "Bulwark",
    "bare_fastapi": "bare FastAPI (same writes)",
}


def available() -> list[str]:
    """The contenders whose packages are installed, in table order."""
    return [
        name
        for name, (_, _, package) in CONTENDERS.items()
        if package is None or importlib.util.find_spec(package) is not None
    ]


def missing() -> dict[str, str]:
    """Contenders left out, with the package each needs."""
    return {
        name: package
        for name, (_, _, package) in CONTENDERS.items()
        if package is not None and importlib.util.find_spec(package) is None
    }


def load_contender(name: str) -> type[Contender]:
    module_name, class_name, _ = CONTENDERS[name]
    cls: type[Contender] = getattr(importlib.import_module(module_name), class_name)
    return cls


__all__ = ["CONTENDERS", "LABELS", "available", "load_contender", "missing"]
