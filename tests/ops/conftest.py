"""Fixtures of the ops tests: pytester for the plugin tests.

``pytest_plugins`` may only be set in the root conftest.py, so pytester is registered
from here when this folder's tests are collected.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
