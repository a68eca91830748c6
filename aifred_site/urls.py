from django.contrib import admin
from django.urls import include, path

from launches.metrics import metrics_view

admin.site.site_header = "AIfred Launch Control"
admin.site.site_title = "AIfred Launch Control"
admin.site.index_title = "Models, hosts, configs and launches"

handler403 = "launches.views.permission_denied"

urlpatterns = [
    path("", include("launches.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("launches.api.urls")),
    path("metrics", metrics_view, name="metrics"),
]
