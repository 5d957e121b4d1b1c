"""Call flows: actions, their validation, and the runner that performs them on a call."""
