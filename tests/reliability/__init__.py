"""The reliability and security suite: faults, bad input, secrets, read-only, bad parameters (pytest -m reliability)."""
