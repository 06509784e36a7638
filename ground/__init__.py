"""The ground of Learnright: what every other package stands on.

Errors, settings, topic names, logging and the service's metrics. This package imports
nothing else of the project (an import-linter contract in ``make test`` holds it to
that), so anything may import it without pulling in a layer above.
"""

__version__ = "0.1.0"
