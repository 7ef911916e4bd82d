"""The round trip against the real torchvision, which needs its own environment: its
wheels are built against their own torch (``pip install torch==2.14.1
torchvision==0.29.1``), not the CPU torch the rest of the suite runs on. Where torchvision
does not import these tests skip, saying so; ``NETSPEC_REQUIRE_TORCHVISION=1`` (set by
.ci/run's second stage) turns the skip into a failure, so CI never passes them by
skipping."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torchvision  # noqa: F401
    except Exception as e:  # ImportError, or its C ops failing beside another torch
        if os.environ.get("NETSPEC_REQUIRE_TORCHVISION") == "1":
            raise pytest.UsageError(f"NETSPEC_REQUIRE_TORCHVISION=1 but torchvision does "
                                    f"not import: {e}") from None
        skip = pytest.mark.skip(reason=f"torchvision does not import here ({e}); "
                                "tests/with_torchvision runs in .ci/run's second stage")
        for item in items:
            if "tests/with_torchvision/" in str(item.fspath).replace(os.sep, "/"):
                item.add_marker(skip)
