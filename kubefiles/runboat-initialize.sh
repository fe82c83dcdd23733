#!/bin/bash
# Clones the commit, installs its addons into a fresh database. Runs once per build.
set -exo pipefail

rm -rf "$ADDONS_DIR"
mkdir -p "$ADDONS_DIR"
cd "$ADDONS_DIR"
curl -sSL "$RUNBOAT_GIT_REPO/tarball/$RUNBOAT_GIT_REF" | tar zxf - --strip-components=1

# Install the addons' Python dependencies, then every addon of the repo (one level deep).
if [ -f requirements.txt ]; then pip install --no-cache-dir -r requirements.txt; fi
ADDONS=$(find . -mindepth 2 -maxdepth 2 -name __manifest__.py -printf '%h\n' | sed 's#^\./##' | paste -sd, -)

dropdb --if-exists "$PGDATABASE"
odoo --addons-path="$ADDONS_DIR" -d "$PGDATABASE" -i "${ADDONS:-base}" --stop-after-init
