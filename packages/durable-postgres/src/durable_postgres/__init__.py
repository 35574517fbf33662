"""The PostgreSQL store of python-durable (see the package README)."""

from .store import PostgresStore

__all__ = ["PostgresStore"]
