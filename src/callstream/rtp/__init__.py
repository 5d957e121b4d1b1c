"""RTP: sans-I/O packets, RFC 4733 events, reorder buffer, per-leg session state."""
