"""FastAGI server for the dialplan: caller lookup and the opt-out / identification line."""

from .protocol import AgiError, AgiHangup, AgiReply, AgiSession
from .scripts import OptOutPrompts, default_handlers, record_opt_out
from .server import AgiServer, Handler

__all__ = [
    "AgiError",
    "AgiHangup",
    "AgiReply",
    "AgiServer",
    "AgiSession",
    "Handler",
    "OptOutPrompts",
    "default_handlers",
    "record_opt_out",
]
