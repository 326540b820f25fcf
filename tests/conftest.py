"""Suite-wide settings: in CI (CI=true) hypothesis draws the same examples every run, so a
submission's result does not depend on the luck of the draw; locally it explores afresh."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")
