"""Fixtures: a test CA, throwaway configs, and the real daemon started in-process."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from auth.accounts import AccountService
from auth.passwords import PasswordHasher
from mailserver import config as cfg
from mailserver.app import App
from mailserver.daemon import Daemon
from storage.interfaces import Store
from tests.helpers import CertAuthority, throwaway_config_values, write_config


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    """One trustme CA (and server certificate) for the whole run."""
    return CertAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def make_config(tmp_path: Path, test_ca: CertAuthority) -> Any:
    """make_config(**dotted_overrides) -> Path of a config file for a throwaway daemon."""

    def make(**overrides: Any) -> Path:
        values = throwaway_config_values(tmp_path, **overrides)
        values.setdefault("tls.cert_file", str(test_ca.cert_file))
        values.setdefault("tls.key_file", str(test_ca.key_file))
        return write_config(tmp_path / "config.toml", values)

    return make


class RunningServer:
    """The in-process daemon under test."""

    def __init__(self, daemon: Daemon, app: App, ca: CertAuthority) -> None:
        self.daemon = daemon
        self.app = app
        self.ca = ca

    def port(self, name: str) -> int:
        return self.app.bound[name][1]

    @property
    def config(self) -> cfg.Config:
        return self.app.config

    @property
    def store(self) -> Store:
        return self.app.store

    @property
    def accounts(self) -> AccountService:
        return self.app.accounts

    def client_ssl_context(self) -> ssl.SSLContext:
        return self.ca.client_context()


@pytest.fixture
async def server(make_config: Any, test_ca: CertAuthority, request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    """The real daemon, in-process, on free loopback ports with a throwaway store.

    Mark a test with ``@pytest.mark.config(key=value, ...)`` (dotted keys written with
    ``__``) to change the config.
    """
    marker = request.node.get_closest_marker("config")
    overrides = dict(marker.kwargs) if marker else {}
    config = cfg.load(make_config(**overrides))
    daemon = Daemon(config, hasher=PasswordHasher(fast=True))
    app = await daemon.start()
    try:
        yield RunningServer(daemon, app, test_ca)
    finally:
        await daemon.stop()
