"""pytest plugin (entry point ``pytest11``: ``mailserver``): a real mail server per test.

Fixtures:

* ``mailserver``: a running :class:`mailserver.testserver.TestMailServer` (the real
  daemon on free loopback ports, throwaway store and self-signed certificate), with the
  accounts of ``mailserver_accounts`` or of the test's ``@pytest.mark.mailserver(...)``.
* ``mailserver_accounts``: the :class:`~mailserver.testserver.AccountSpec` to create;
  override it in a conftest.py for a whole directory.

Marker: ``@pytest.mark.mailserver(users={...}, shared={...}, lists={...}, rooms=[...],
aliases={...}, config={"limits.message_size": 10_000})`` replaces the accounts of
``mailserver_accounts`` (when it names any) and changes config keys.

The server is imported only when a test asks for the fixture, so installing the
package costs other test suites nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mailserver.testserver import AccountSpec, TestMailServer

ACCOUNT_KEYS = ("users", "shared", "lists", "rooms", "aliases")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mailserver(users=, shared=, lists=, rooms=, aliases=, config=): accounts and config keys "
        "of the mailserver fixture",
    )


@pytest.fixture
def mailserver_accounts() -> AccountSpec:
    """Accounts the ``mailserver`` fixture creates (none; override in conftest.py)."""
    from mailserver.testserver import AccountSpec

    return AccountSpec()


@pytest.fixture
def mailserver(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               mailserver_accounts: AccountSpec) -> Iterator[TestMailServer]:
    """A running mail server for this test; stopped and deleted afterwards."""
    from mailserver.testserver import AccountSpec, TestMailServer

    spec = mailserver_accounts
    config: dict[str, Any] = {}
    marker = request.node.get_closest_marker("mailserver")
    if marker is not None:
        kwargs = dict(marker.kwargs)
        config = {k.replace(".", "__"): v for k, v in dict(kwargs.pop("config", {})).items()}
        unknown = set(kwargs) - set(ACCOUNT_KEYS)
        if unknown:
            raise pytest.UsageError(f"mark.mailserver: unknown argument(s) {', '.join(sorted(unknown))}")
        if kwargs:
            spec = AccountSpec.of(**kwargs)
    server = TestMailServer(spec, folder=tmp_path_factory.mktemp("mailserver"), **config)
    server.start()
    try:
        yield server
    finally:
        server.stop()
