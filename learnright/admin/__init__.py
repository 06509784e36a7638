"""Administering a running service: its admin socket (server), and how the CLI finds it (client).

While `learnright serve` holds the ledger file, the CLI's ledger commands (tokens,
licenses apply, statements list and get, quarantine, close, snapshot) go through the
service's admin interface: HTTP on a unix socket beside the ledger, mode 0600, so only
the service's own user may connect. Writes are queued onto the service's single writer
(:meth:`consumers.scheduler.LedgerService.submit`); reads use a reader cursor.

``operations`` holds what each command does to a ledger and the plain answer it gives;
the CLI runs the same operation on the file when no service answers, so the output is the
same either way.
"""
