"""kyu's Python client: enqueue and follow jobs, and run workers for remote job types.

>>> from kyu_client import Client
>>> with Client("http://127.0.0.1:7878") as kyu:
...     job = kyu.enqueue("echo", {"hello": "kyu"})
...     kyu.wait(job.job_id).result
"""

from ._version import __version__
from .async_client import AsyncClient
from .client import Client
from .context import JobContext
from .errors import (
    Conflict,
    InvalidInput,
    KyuError,
    LeaseLost,
    NotFound,
    Unauthorized,
    Unavailable,
)
from .models import TERMINAL_STATUSES, AttemptError, Enqueued, Job, JobPage
from .outcomes import Cancelled, NonRetryable, RateLimited, Retryable, Snooze
from .worker import Worker

__all__ = [
    "TERMINAL_STATUSES",
    "AsyncClient",
    "AttemptError",
    "Cancelled",
    "Client",
    "Conflict",
    "Enqueued",
    "InvalidInput",
    "Job",
    "JobContext",
    "JobPage",
    "KyuError",
    "LeaseLost",
    "NonRetryable",
    "NotFound",
    "RateLimited",
    "Retryable",
    "Snooze",
    "Unauthorized",
    "Unavailable",
    "Worker",
    "__version__",
]
