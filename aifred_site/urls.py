from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "AIfred Launch Control"
admin.site.site_title = "AIfred Launch Control"
admin.site.index_title = "Fleet"

urlpatterns = [
    path("", include("launches.urls")),
    path("admin/", admin.site.urls),
]
