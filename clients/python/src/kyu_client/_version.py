"""The client's version, sent as User-Agent and as the worker's ``version``."""

__version__ = "0.1.0"
