"""Shared pytest configuration: hypothesis profiles (fast for CI, thorough on demand)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("DECODEKIT_HYPOTHESIS_PROFILE", "ci"))
