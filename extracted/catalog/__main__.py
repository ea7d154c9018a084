"""`python -m extracted.catalog --port 8102 --db sqlite:///var/catalog.sqlite3`."""

from extracted.catalog.app import make_app
from extracted.catalog.migrations import MIGRATIONS
from extracted.web import serve

if __name__ == "__main__":
    serve("catalog", 8102, "var/catalog.sqlite3", MIGRATIONS, make_app)
