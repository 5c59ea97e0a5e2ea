"""Prefect tasks: each a thin, retried step over the claude_pool library.

Only ids and plain values cross task boundaries: never a key, never a client.
"""
