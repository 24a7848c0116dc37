# The portal's app image: Streamlit + the portal package, run as an unprivileged user.
FROM python:3.11-slim-bookworm

# libmagic for python-magic's file-type verdicts on uploads.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORTAL_ENV=prod

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY portal ./portal
COPY audit ./audit
# Editable, so app.py, pages/ and migrations/ are found beside the package; at the versions in
# constraints.txt, the ones the tests passed with (`make pins` updates them).
RUN pip install --no-cache-dir -c constraints.txt -e .
COPY app.py alembic.ini ./
COPY .streamlit ./.streamlit
COPY pages ./pages
COPY migrations ./migrations

# COPY keeps each file's mode from the checkout: on a host whose umask is 027 or 077 (hardened
# servers) git checks the files out unreadable by others, and the app user could not read them.
RUN useradd --create-home --uid 10001 --user-group portal \
    && chmod -R a+rX /app
USER 10001:10001

EXPOSE 8501
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status != 200)"]
CMD ["portal", "serve", "--address", "0.0.0.0", "--port", "8501"]
