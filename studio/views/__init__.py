"""Views by page: studio (prompt studio and its fragments), gallery, review (detail, comments), lineage
(promote, remix, re-run), teams. Each module lists its own `urlpatterns`; studio/urls.py joins them."""
