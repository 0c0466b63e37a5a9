"""Reports: figures read from the database for operations, the CLI and the portal.

A report holds counts and codes only (event types, duties, status codes), never personal data,
so it can be downloaded, charted and shared.
"""
