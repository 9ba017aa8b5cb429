#!/bin/sh
# Generates the Prisma client of every schema.prisma under examples/ into its
# generated/ folder (gitignored). Offline: the clients use engineType "client" (the
# TypeScript query compiler and a driver adapter), so no engine binary is fetched.
# Quiet on success; exits nonzero on the first failure. Run from anywhere, after
# `npm ci` in examples/.
set -eu
cd "$(dirname "$0")"
# prisma.config.js selects the JS schema engine, so the CLI fetches no binary. The CLI reads
# the generator's engineType only when the schema parses, and the schema's
# env("DATABASE_URL") must be set for that: any URL will do, generate never connects.
export DATABASE_URL="${DATABASE_URL:-postgresql://localhost/unused}"
export PRISMA_HIDE_UPDATE_MESSAGE=1 CHECKPOINT_DISABLE=1
for schema in */schema.prisma; do
    [ -e "$schema" ] || continue
    if ! out=$(PRISMA_SCHEMA_FILE="$schema" ./node_modules/.bin/prisma generate --schema "$schema" 2>&1); then
        printf '%s\n' "$out" >&2
        echo "generate.sh: prisma generate failed for examples/$schema" >&2
        exit 1
    fi
done
