"""Errors of the wire contract."""

from ground.errors import TerminalError


class DecodeError(TerminalError):
    """Bytes on a topic are not a record of any known schema."""

    code = "undecodable"


class UnknownSchemaError(DecodeError):
    """A record names a schema fingerprint this catalog does not hold."""

    code = "unknown_schema"
