#!/bin/bash
# Drops the build's databases (the main one and any created from it by tests or users).
set -exo pipefail
for db in $(psql -At -d postgres -c "select datname from pg_database where datname like '${PGDATABASE}%'"); do
  dropdb --if-exists --force "$db"
done
