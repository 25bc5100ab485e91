"""The daemon's room booking service: one :class:`~delivery.booking.attendant.RoomBooking`
per running App, whose background tasks count as in-flight work (shutdown waits for
them up to ``server.shutdown_grace_seconds``)."""

from __future__ import annotations

import weakref

from delivery.booking.attendant import Attendant, RoomBooking
from delivery.local import MailTransaction
from mailserver.app import App
from storage.types import Account, AccountKind

_SERVICES: weakref.WeakKeyDictionary[App, RoomBooking] = weakref.WeakKeyDictionary()


def booking_for(app: App) -> RoomBooking:
    """The App's booking service (created on first use)."""
    service = _SERVICES.get(app)
    if service is None:
        service = RoomBooking(Attendant(app.store, app.config.hostname), app.inflight.hold)
        _SERVICES[app] = service
    return service


def rooms_of(txn: MailTransaction) -> list[Account]:
    """The rooms among a committed transaction's local recipients."""
    return [a for a in txn.local.values() if a.kind is AccountKind.ROOM]
