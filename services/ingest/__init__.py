"""Ingest: canonical events (and, later, each feed's native format) in, validated, deduplicated,
recorded, and published to `case-events`; rejected records kept with their reason."""

from services.ingest.routes import mount

NAME = "ingest"

__all__ = ["NAME", "mount"]
