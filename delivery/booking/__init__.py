"""The room booking attendant: meeting requests (iMIP, RFC 6047) addressed to a room
are read, checked against the room's policy and calendar, booked, and answered with an
iTIP REPLY (RFC 5546 §3.2.3).

* :mod:`.imip` finds and parses the text/calendar part of a message;
* :mod:`.instances` expands recurrences into busy intervals (also used by CalDAV);
* :mod:`.policy` decides, without I/O, what the room answers;
* :mod:`.reply` writes the REPLY message and the room's copy of the event;
* :mod:`.approval` holds requests for delegates, forwards them, reads their answers;
* :mod:`.attendant` ties them to the store and to delivery.
"""
