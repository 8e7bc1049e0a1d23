"""The base of the vault's errors, in a module of its own so that vault.py and diskfull.py both import it
(diskfull's DiskFull is a VaultError; the vault raises DiskFull) without importing each other."""

from __future__ import annotations


class VaultError(Exception):
    """Base for vault errors; ``str(exc)`` is one plain sentence that is safe to show a user."""

    default_message = "Something went wrong with the vault."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)
