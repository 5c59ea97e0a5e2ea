"""The ground floor: settings, the operator's config file, the error tree, logging, redaction,
key encryption, Redis connections, key names and Lua script loading, the one translation of a
backend's failures into ``BackendUnavailable``, and small async helpers.

Owns nothing stateful of its own. Imports nothing else of claude-pool (``make lint`` checks it):
every other subpackage may import it.
"""
