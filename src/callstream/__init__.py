"""callstream: live phone-call audio (SIP + RTP) on WebSockets."""

__version__ = "0.1.0"
