"""CalDAV and CardDAV on the HTTP listener: Radicale (embedded, WSGI, one thread per
request) with our own plugins:

* authentication is ours (:mod:`.http` checks HTTP Basic with the daemon's
  Authenticator, then hands Radicale the user as ``REMOTE_USER``);
* :mod:`.rights` maps our accounts and grants to Radicale permissions;
* :mod:`.storage` keeps collections and items in our :class:`~storage.interfaces.CalendarStore`,
  so room bookings made by the attendant and events written over CalDAV are the same data.

The tree: ``/dav/<address>/`` is the principal of a user, shared mailbox or room;
``calendar``, ``tasks`` and ``contacts`` are its default collections.
"""
