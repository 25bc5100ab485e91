"""Radicale storage plugin (``[storage] type = mailserver.dav.storage``) backed by our
:class:`~storage.interfaces.CalendarStore`.

Radicale calls it from a worker thread; every store call is sent to the event loop
(:meth:`~mailserver.dav.context.DavContext.call`). Principals are the mailboxes the
request's user may reach (:func:`mailserver.dav.context.build`); their default
collections are created on first discovery. Event items get their busy intervals
computed on upload (:func:`delivery.booking.instances.busy_intervals`), so events that
delegates write into a room calendar count for the attendant's conflict checks.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import icalendar
from radicale import item as radicale_item
from radicale import pathutils, storage

from delivery.booking.instances import busy_intervals, zone
from mailserver.dav.context import Access, DavContext, Mailbox, current
from storage.errors import AlreadyExists, Conflict, NotFound
from storage.types import BusyInterval, CalendarCollection, CalendarItem, CollectionKind

_TAGS = {CollectionKind.CALENDAR: "VCALENDAR", CollectionKind.TASKS: "VCALENDAR", CollectionKind.CONTACTS: "VADDRESSBOOK"}
_COMPONENTS = {CollectionKind.CALENDAR: "VEVENT", CollectionKind.TASKS: "VTODO"}
_NAMES = {CollectionKind.CALENDAR: "Calendar", CollectionKind.TASKS: "Tasks", CollectionKind.CONTACTS: "Contacts"}


def _ctx() -> DavContext:
    ctx = current()
    if ctx is None:
        raise RuntimeError("DAV storage used outside a request")
    return ctx


def _http_date(value: datetime) -> str:
    return format_datetime(value.astimezone(UTC), usegmt=True)


def _kind_of(props: Mapping[str, str]) -> CollectionKind:
    if props.get("tag") == "VADDRESSBOOK":
        return CollectionKind.CONTACTS
    components = props.get("C:supported-calendar-component-set", "VEVENT")
    if "VTODO" in components and "VEVENT" not in components:
        return CollectionKind.TASKS
    return CollectionKind.CALENDAR


class Principal(storage.BaseCollection):
    """The root ("") or a mailbox's principal: no items, no properties of its own."""

    def __init__(self, path: str, updated: datetime | None = None) -> None:
        self._path = path
        self._updated = updated or datetime.now(UTC)

    @property
    def path(self) -> str:
        return self._path

    def get_multi(self, hrefs: Iterable[str]) -> Iterable[tuple[str, radicale_item.Item | None]]:
        return [(href, None) for href in hrefs]

    def get_all(self) -> Iterable[radicale_item.Item]:
        return []

    def get_meta(self, key: str | None = None) -> Any:
        return {} if key is None else None

    def set_meta(self, props: Mapping[str, str]) -> None:
        raise ValueError("a principal has no writable properties")

    def upload(self, href: str, item: radicale_item.Item) -> tuple[radicale_item.Item, radicale_item.Item | None]:
        raise ValueError("items belong in a calendar or address book")

    def delete(self, href: str | None = None) -> None:
        raise ValueError("a principal cannot be deleted")

    @property
    def last_modified(self) -> str:
        return _http_date(self._updated)


class Collection(storage.BaseCollection):
    """One calendar, task list or address book of one mailbox."""

    def __init__(self, box: Mailbox, record: CalendarCollection) -> None:
        self._box = box
        self._record = record

    @property
    def path(self) -> str:
        return f"{self._box.account.address}/{self._record.name}"

    def _item(self, stored: CalendarItem) -> radicale_item.Item:
        return radicale_item.Item(
            collection=self, href=stored.href, text=stored.text, etag=f'"{stored.etag}"',
            uid=stored.uid, last_modified=_http_date(stored.modified),
        )

    def get_multi(self, hrefs: Iterable[str]) -> Iterable[tuple[str, radicale_item.Item | None]]:
        wanted = list(dict.fromkeys(hrefs))
        found = {i.href: i for i in _ctx().call(_ctx().store.calendars.get_items(self._record.id, wanted))}
        return [(h, self._item(found[h]) if h in found else None) for h in wanted]

    def get_all(self) -> Iterable[radicale_item.Item]:
        return [self._item(i) for i in _ctx().call(_ctx().store.calendars.list_items(self._record.id))]

    def has_uid(self, uid: str) -> bool:
        return _ctx().call(_ctx().store.calendars.get_item_by_uid(self._record.id, uid)) is not None

    def _busy(self, text: str) -> list[BusyInterval]:
        if self._record.kind is not CollectionKind.CALENDAR:
            return []
        try:
            cal = icalendar.Calendar.from_ical(text)
        except Exception:
            return []
        return busy_intervals(cal, zone(self._box.timezone), datetime.now(UTC))

    def upload(self, href: str, item: radicale_item.Item) -> tuple[radicale_item.Item, radicale_item.Item | None]:
        if not pathutils.is_safe_filesystem_path_component(href):
            raise pathutils.UnsafePathError(href)
        text = item.serialize()
        ctx = _ctx()
        try:
            new, old = ctx.call(ctx.store.calendars.put_item(self._record.id, href, item.uid, text, self._busy(text)))
        except Conflict as err:
            raise ValueError(str(err)) from None
        return self._item(new), None if old is None else self._item(old)

    def delete(self, href: str | None = None) -> None:
        ctx = _ctx()
        if href is None:
            ctx.call(ctx.store.calendars.delete_collection(self._record.id))
            return
        if ctx.call(ctx.store.calendars.delete_item(self._record.id, href)) is None:
            raise storage.ComponentNotFoundError(href)

    def get_meta(self, key: str | None = None) -> Any:
        meta: dict[str, str] = {"tag": _TAGS[self._record.kind], "D:displayname": _NAMES[self._record.kind]}
        if self._record.kind in _COMPONENTS:
            meta["C:supported-calendar-component-set"] = _COMPONENTS[self._record.kind]
        meta.update(self._record.props)
        return meta if key is None else meta.get(key)

    def set_meta(self, props: Mapping[str, str]) -> None:
        ctx = _ctx()
        self._record = ctx.call(ctx.store.calendars.set_collection_props(self._record.id, dict(props)))

    @property
    def last_modified(self) -> str:
        return _http_date(self._record.modified)


class Storage(storage.BaseStorage):
    """The Radicale storage backed by our store (see the module docstring)."""

    _supports_unicode = True

    def __init__(self, configuration: Any) -> None:
        super().__init__(configuration)
        self._write_lock = threading.RLock()

    def _collections(self, box: Mailbox) -> list[CalendarCollection]:
        ctx = _ctx()
        return ctx.call(ctx.store.calendars.ensure_default_collections(box.account.id))

    def discover(self, path: str, depth: str = "0",
                 child_context_manager: Callable[[str, str | None], AbstractContextManager[None]] | None = None,
                 user_groups: set[str] | None = None) -> Iterable[Any]:
        ctx = _ctx()
        parts = [p for p in pathutils.strip_path(pathutils.sanitize_path(path)).split("/") if p]
        if not parts:
            yield Principal("")
            if depth != "0":
                for address in sorted(ctx.mailboxes):
                    yield Principal(address)
            return
        box = ctx.mailbox(parts[0])
        if box is None or parts[0] != box.account.address:
            return
        records = self._collections(box)
        if box.access is Access.FREEBUSY:  # only the calendars count for free/busy
            records = [r for r in records if r.kind is CollectionKind.CALENDAR]
        if len(parts) == 1:
            yield Principal(box.account.address)
            if depth != "0":
                for record in records:
                    yield Collection(box, record)
            return
        found_record = next((r for r in records if r.name == parts[1]), None)
        if found_record is None or len(parts) > 3:
            return
        collection = Collection(box, found_record)
        if len(parts) == 3:
            for _, found in collection.get_multi([parts[2]]):
                if found is not None:
                    yield found
            return
        yield collection
        if depth != "0":
            yield from collection.get_all()

    def move(self, item: radicale_item.Item, to_collection: storage.BaseCollection, to_href: str) -> None:
        source = item.collection
        if source is None or item.href is None:
            raise ValueError("cannot move an item without a collection")
        to_collection.upload(to_href, item)
        if not (source.path == to_collection.path and item.href == to_href):
            source.delete(item.href)

    def create_collection(self, href: str, items: Iterable[radicale_item.Item] | None = None,
                          props: Mapping[str, str] | None = None) -> Any:
        ctx = _ctx()
        parts = [p for p in pathutils.strip_path(pathutils.sanitize_path(href)).split("/") if p]
        box = ctx.mailboxes.get(parts[0].lower()) if parts else None
        if box is None or len(parts) > 2:
            raise ValueError(f"cannot create a collection at {href!r}")
        if len(parts) == 1:
            return Principal(box.account.address), {}, []
        if not pathutils.is_safe_filesystem_path_component(parts[1]):
            raise pathutils.UnsafePathError(parts[1])
        props = dict(props or {})
        kind = _kind_of(props)
        existing = ctx.call(ctx.store.calendars.get_collection(box.account.id, parts[1]))
        if existing is not None:
            if items is None and not props:
                return Collection(box, existing), {}, []
            ctx.call(ctx.store.calendars.delete_collection(existing.id))
        try:
            record = ctx.call(ctx.store.calendars.create_collection(box.account.id, parts[1], kind, props))
        except (AlreadyExists, NotFound) as err:
            raise ValueError(str(err)) from None
        collection = Collection(box, record)
        uploaded: dict[str, radicale_item.Item] = {}
        for i, it in enumerate(items or []):
            name = it.href or f"item-{i}.{'vcf' if kind is CollectionKind.CONTACTS else 'ics'}"
            uploaded[name], _ = collection.upload(name, it)
        return collection, uploaded, []

    @contextlib.contextmanager
    def acquire_lock(self, mode: str, user: str = "", *args: Any, **kwargs: Any) -> Iterator[None]:
        # Each store call is one transaction; a request's writes are serialised here so
        # that Radicale's read-check-write (If-Match, UID uniqueness) is not interleaved.
        if mode == "w":
            with self._write_lock:
                yield
        else:
            yield

    def verify(self) -> bool:
        return True
