"""HitCall: outbound call-centre dialer on Asterisk ARI."""

__version__ = "0.1.0"
