"""The only code that touches sockets: SIP transports, RTP ports."""
