"""WSGI entry point: `gunicorn legacy_demo.wsgi:application`."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "legacy_demo.settings")

from legacy_demo.telemetry import setup_tracing  # noqa: E402

setup_tracing()

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
