"""Test-suite settings shared by every test file.

Hypothesis: the ``ci`` profile is loaded by default, so a run of the suite draws the same
examples on every machine and never depends on a local ``.hypothesis/`` example database
(a failure once saved there would replay in every later run of that checkout only).
``derandomize`` seeds each test from its own source; ``print_blob`` prints the
``@reproduce_failure`` line of a failing example. Deeper, random hunts stay opt-in:
``NETSPEC_FUZZ=long`` (tests/test_fuzz.py) or ``HYPOTHESIS_PROFILE=dev`` (random examples,
the local database kept).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """One torch thread for a module's tests (the training ones), restored after; torch
    is imported only when a module asks for this."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
