"""Learnright's shells: the CLI, the HTTP API and holder page, the server, the demo and the bench.

They are thin: each command and route calls a service function of ``ledger.services``,
``consumers`` or ``producers``. The project's own Kafka broker runner lives here too.
"""

from ground import __version__

__all__ = ["__version__"]
