#!/bin/bash
# Serves the initialized database; the addons were fetched by the init job onto the volume.
set -exo pipefail
exec odoo --addons-path="$ADDONS_DIR" -d "$PGDATABASE" --db-filter="^$PGDATABASE\$" --http-port=8069 \
  --smtp=localhost --smtp-port=1025
