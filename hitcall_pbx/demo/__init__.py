"""`hitcall demo` and the seeding helpers it shares with the end-to-end tests."""

from .run import run_demo

__all__ = ["run_demo"]
