#!/bin/sh
# Writes the compose secrets (docker-compose.yml, `secrets:`) into deploy/secrets/, once: random passwords for
# PostgreSQL, Grafana's admin and Flower's basic auth, and the database URL that holds the first. An existing file
# is kept, so running it again changes nothing. The folder is the operator's alone (0700): compose mounts each
# file into its containers as it is on the host, and the containers' users (not the operator's) must read it.
set -eu
cd "$(dirname "$0")/secrets"
umask 022
chmod 700 .

random() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }  # 24 URL-safe characters

keep() {  # keep NAME VALUE: write the secret unless it exists
    [ -s "$1" ] || { printf '%s' "$2" > "$1"; echo "wrote deploy/secrets/$1"; }
}

keep postgres_password "$(random)"
keep database_url "postgresql://newsflow:$(cat postgres_password)@postgres:5432/newsflow"
keep grafana_admin_password "$(random)"
keep flower_basic_auth "admin:$(random)"
chmod 644 postgres_password database_url grafana_admin_password flower_basic_auth
