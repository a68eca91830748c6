from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from launches.api import views

router = DefaultRouter()
router.register("hosts", views.HostViewSet, basename="hosts")
router.register("gpu-profiles", views.GpuProfileViewSet, basename="gpu-profiles")
router.register("models", views.ModelSpecViewSet, basename="models")
router.register("limits", views.DetectedLimitViewSet, basename="limits")
router.register("configs", views.LaunchConfigViewSet, basename="configs")
router.register("launches", views.LaunchViewSet, basename="launches")

app_name = "api"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("schema/docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("", include(router.urls)),
]
