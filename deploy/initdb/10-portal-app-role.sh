#!/bin/sh
# Runs once, when the postgres image initialises an empty volume: the login role the app
# connects as. Its privileges (DML on data.*, append-only on audit.*) come from the migrations.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v app_password="$PORTAL_APP_PASSWORD" -v db="$POSTGRES_DB" <<'SQL'
CREATE ROLE portal_app LOGIN PASSWORD :'app_password';
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO portal_app;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
