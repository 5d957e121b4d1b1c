"""SIP: sans-I/O core — messages, URIs, SDP, digest auth, transactions, dialogs, the agent."""
