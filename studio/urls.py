"""URLs. Render ids in URLs are UUIDs, never sequential numbers."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from studio.views import gallery, lineage, money, operator, public, review, shares, teams, viewer
from studio.views import studio as views
from studio.views.auth import LoginView

urlpatterns = [
    path("", views.studio, name="studio"),
    path("estimate/", views.estimate, name="estimate"),
    path("renders/", views.submit, name="submit"),
    path("renders/poll/", views.poll, name="poll"),
    path("renders/<uuid:render_id>/", views.card, name="card"),
    path("renders/<uuid:render_id>/cancel/", views.cancel, name="cancel"),
    path("renders/<uuid:render_id>/video.mp4", views.video, name="video"),
    path("renders/<uuid:render_id>/poster.jpg", views.poster, name="poster"),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    *gallery.urlpatterns,
    *review.urlpatterns,
    *lineage.urlpatterns,
    *teams.urlpatterns,
    *money.urlpatterns,
    *operator.urlpatterns,
    *public.urlpatterns,
    *viewer.urlpatterns,
    *shares.urlpatterns,
]

handler403 = "studio.views.errors.permission_denied"
handler404 = "studio.views.errors.page_not_found"
