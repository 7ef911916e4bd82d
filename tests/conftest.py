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

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
