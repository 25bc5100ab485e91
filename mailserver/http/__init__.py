"""The small HTTP listener: health, readiness, metrics and client auto-configuration.

:mod:`.server` reads one bounded request per connection and dispatches it;
:mod:`.routes` holds the handlers; :mod:`.access` guards the operator endpoints.
"""

from mailserver.http.messages import Handler, Request, Response
from mailserver.http.server import start

__all__ = ["Handler", "Request", "Response", "start"]
