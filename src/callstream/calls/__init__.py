"""Calls and legs: what a SIP dialog and its audio are inside the gateway."""
