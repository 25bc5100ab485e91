"""IMAP4rev1 front end: the sans-IO parser package lives in ``mailserver.imap.parser``."""
