"""durable-redis: the Redis store of python-durable.

from durable import Workflow, RedisStore
wf = Workflow("app", db="redis://localhost:6379/0")            # or rediss://, unix://
wf = Workflow("app", db="redis://localhost:6379/0?ttl=3600&prefix=shop")
wf = Workflow("app", db=RedisStore("redis://localhost:6379/0", ttl=None))
"""

from .store import RedisStore

__version__ = "0.3.0"
__all__ = ["RedisStore"]
