"""WSGI entry point."""

import os

from django.core.wsgi import get_wsgi_application

from studio.bootstrap import prepare_data_dir

prepare_data_dir()  # settings only read: the data directory and its SECRET_KEY are made here
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
application = get_wsgi_application()
