"""The ground floor: settings, the operator's config file, the error tree, logging, redaction,
key encryption, Redis connections and key names, and small async helpers.

Owns nothing stateful of its own. Imports nothing else of claude-pool (``make lint`` checks it):
every other subpackage may import it.
"""
