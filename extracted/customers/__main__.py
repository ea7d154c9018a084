"""`python -m extracted.customers --port 8101 --db sqlite:///var/customers.sqlite3`."""

from extracted.customers.app import make_app
from extracted.customers.migrations import MIGRATIONS
from extracted.web import serve

if __name__ == "__main__":
    serve("customers", 8101, "var/customers.sqlite3", MIGRATIONS, make_app)
