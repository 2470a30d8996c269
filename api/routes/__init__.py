"""One router per resource, each under ``API_PREFIX`` (its paths are the full paths, so the
metrics' ``route`` label and ``Location`` headers need no assembling)."""

API_PREFIX = "/api/v1"
