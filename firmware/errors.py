"""The project's exceptions: one base, and subclasses that also inherit the standard type."""

from __future__ import annotations


class PolewatchError(Exception):
    """Base class of every error polewatch raises on purpose."""


class ConfigError(PolewatchError, ValueError):
    """A board, site or scenario file is invalid; the message names the file and key path."""


class ProtocolError(PolewatchError, ValueError):
    """A wire message does not match the protocol specification."""


class HardwareError(PolewatchError, RuntimeError):
    """A device could not be opened, read or driven."""


class ActuatorFault(HardwareError):
    """An output did not take the state it was told to take."""


class BackendNotFound(PolewatchError, LookupError):
    """No backend of that name is registered for that kind of device."""


class NetworkError(PolewatchError, OSError):
    """A socket could not be bound or reached (a port in use, an address not on this host)."""


class StorageError(PolewatchError, RuntimeError):
    """A durable store (outbox, receiver database) could not be read or written."""


class ModelError(PolewatchError, ValueError):
    """A model or label file is missing, unreadable, or not what its user expects."""
