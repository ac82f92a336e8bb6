"""URLs. Render ids in URLs are UUIDs, never sequential numbers."""

from django.contrib import admin
from django.urls import path

from studio.views import (
    auth,
    gallery,
    health,
    invitations,
    lineage,
    live,
    money,
    operator,
    prompts,
    public,
    review,
    shares,
    teams,
    variants,
    viewer,
)
from studio.views import studio as views

admin.site.login_form = auth.ThrottledAdminAuthenticationForm  # the admin's login counts failures too

urlpatterns = [
    path("", views.studio, name="studio"),
    path("estimate/", views.estimate, name="estimate"),
    path("renders/", views.submit, name="submit"),
    path("renders/poll/", views.poll, name="poll"),
    path("renders/older/", views.older, name="older"),
    path("renders/<uuid:render_id>/", views.card, name="card"),
    path("renders/<uuid:render_id>/cancel/", views.cancel, name="cancel"),
    path("renders/<uuid:render_id>/video.mp4", views.video, name="video"),
    path("renders/<uuid:render_id>/poster.jpg", views.poster, name="poster"),
    *auth.urlpatterns,
    path("admin/", admin.site.urls),
    *gallery.urlpatterns,
    *review.urlpatterns,
    *lineage.urlpatterns,
    *teams.urlpatterns,
    *invitations.urlpatterns,
    *money.urlpatterns,
    *operator.urlpatterns,
    *public.urlpatterns,
    *viewer.urlpatterns,
    *shares.urlpatterns,
    *variants.urlpatterns,
    *prompts.urlpatterns,
    *live.urlpatterns,
    *health.urlpatterns,
]

handler403 = "studio.views.errors.permission_denied"
handler404 = "studio.views.errors.page_not_found"
