"""Radicale rights plugin (``[rights] type = mailserver.dav.rights``): our grants as
Radicale permissions (see :mod:`radicale.rights` for the letters).

* own mailbox, Full Access on a shared mailbox: read the principal, create collections
  (``RW``), read-write its calendars, task lists and address books (``rw``);
* rooms: every internal user reads their collections (``R``/``r``); Full Access holders
  and the room's delegates also write them (``rw``); the attendant writes through the store;
* any other user's or shared mailbox's calendars: free/busy only (``f``: the
  free-busy-query REPORT of RFC 4791 §7.10; no PROPFIND below depth 0, no GET, no
  other REPORT, no write), the principal itself nothing;
* anything else: nothing (the collection is not found).
"""

from __future__ import annotations

from radicale import rights

from mailserver.dav.context import Access, current


class Rights(rights.BaseRights):
    def authorization(self, user: str, user_groups: set[str], path: str) -> str:
        ctx = current()
        if ctx is None or not user or user != ctx.user.address:
            return ""
        parts = [p for p in path.strip("/").split("/") if p]
        if not parts:
            return "R"
        box = ctx.mailbox(parts[0])
        if box is None:
            return ""
        principal = len(parts) == 1
        if box.access is Access.FREEBUSY:
            return "" if principal else "f"
        if box.access is Access.OWNER:
            return "RW" if principal else "rw"
        if box.access is Access.WRITE:
            return "R" if principal else "rw"
        return "R" if principal else "r"
