from django.urls import path
from django.views.generic import RedirectView

from launches import views

app_name = "launches"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False), name="home"),
    path("fleet/", views.fleet, name="fleet"),
    path("launches/<int:pk>/live/", views.live, name="live"),
    path("launches/<int:pk>/events.json", views.events, name="events"),
]
