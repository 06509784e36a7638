"""The producer SDK AI platforms use to report usage: validate, encode, deliver once."""

from producers.emitter import DeliveryError, UsageEmitter

__all__ = ["DeliveryError", "UsageEmitter"]
