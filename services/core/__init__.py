"""Core: settings, pure domain types, calendar and clock, state machine, templates, database,
topics, logging and the runner. Imports none of the other services."""
