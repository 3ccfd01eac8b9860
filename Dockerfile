# cancelnotify: a wheel built in one stage, installed into a slim runtime as a non-root user.
# Templates ship inside the wheel; mount your own at /templates and set
# CANCELNOTIFY_TEMPLATES_DIR=/templates to override any template or translation.

FROM python:3.12-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.6.1
COPY pyproject.toml README.md alembic.ini ./
COPY src ./src
COPY templates ./templates
COPY migrations ./migrations
RUN python -m build --wheel --outdir /wheels

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CANCELNOTIFY_HOST=0.0.0.0 \
    CANCELNOTIFY_PORT=8000
RUN groupadd --system --gid 10001 cancelnotify \
 && useradd --system --uid 10001 --gid cancelnotify --home-dir /app --create-home cancelnotify
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
USER cancelnotify
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["cancelnotify", "serve"]
