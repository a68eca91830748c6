# One image for every role: web, control worker, GPU worker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN useradd --create-home --uid 10001 aifred \
    && mkdir -p /app/var /app/staticfiles \
    && DEBUG=0 SECRET_KEY=build-only-not-secret python manage.py collectstatic --noinput -v0 \
    && chown -R aifred:aifred /app/var /app/staticfiles
USER aifred

EXPOSE 8000
CMD ["gunicorn", "aifred_site.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
