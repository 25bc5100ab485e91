"""Outbound delivery (issue 6): the queue worker and what it needs.

* :mod:`.settings` plain settings objects (built by the daemon from config; this
  package never imports :mod:`mailserver`);
* :mod:`.routes` RFC 5321 §5.1 route resolution over an injected resolver;
* :mod:`.client` one SMTP client transaction with per-recipient results;
* :mod:`.dsn` RFC 3464 delivery status notifications;
* :mod:`.dkim` DKIM keys and signing (dkimpy);
* :mod:`.bounces` the bounce address of distribution-list mail to external members;
* :mod:`.worker` the queue worker that ties them together.
"""
