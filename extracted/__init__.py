"""Services extracted from the Acme Shop monolith, each with its own database.

Nothing here imports `legacy_demo`: an extracted service shares the monolith's HTTP contract,
never its code or tables.
"""
