"""The guest: a small freestanding C kernel, its ABI with the host, and its build."""
