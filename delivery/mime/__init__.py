"""Pure MIME indexing for IMAP: parse a message once, keep byte offsets and wire strings.

Modules: ``headers`` (fields, parameters, RFC 2047 words), ``addresses`` (ENVELOPE
address lists), ``wire`` (IMAP strings), ``parts`` (the part tree on raw offsets),
``sections`` (BODY[section] slices), ``search`` (SEARCH text matching).  The public
entry point is :mod:`delivery.mime_index`.  Nothing here does I/O.
"""
