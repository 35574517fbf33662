"""durable-sqlite: the embedded SQLite store of python-durable.

from durable import Workflow
wf = Workflow("app", db="jobs.db")             # or db="sqlite:///jobs.db"
wf = Workflow("app", db=SQLiteStore("jobs.db", durability="full"))
"""

from .store import Durability, SQLiteStore

__version__ = "0.3.0"
__all__ = ["Durability", "SQLiteStore"]
