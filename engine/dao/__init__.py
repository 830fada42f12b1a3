"""Data access: typed models and query functions that take a session first and never commit."""
