#!/usr/bin/env bash
# Create the Secrets cxrwatch reads, with random values, in one namespace.
#
#   deploy/k8s/create-secrets.sh NAMESPACE
#
# A Secret that already exists is left as it is, so running this again never
# rotates a password under a running system. Values travel to kubectl on
# stdin, never as command arguments. Prints, once, the API key it makes for
# the first administrator: store it in your password manager.
#
# Secrets (key: value):
#   cxrwatch-kafka-<service>  username, password   imaging clinical joiner scorer alerter
#   cxrwatch-kafka-keda       username, password, sasl, tls   (KEDA's scaler)
#   cxrwatch-redis            password, url        (url = redis://:<password>@cxrwatch-redis:6379/0)
#   cxrwatch-api              api-keys, token-secret
# With an external Kafka, create cxrwatch-kafka-* yourself with your users'
# credentials (this script would invent passwords your brokers do not know),
# and cxrwatch-kafka-ca with key ca.crt.
set -euo pipefail

namespace=${1:?usage: create-secrets.sh NAMESPACE}

random_hex() {
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# create_secret NAME KEY=VALUE...
create_secret() {
  local name=$1
  shift
  if kubectl -n "$namespace" get secret "$name" >/dev/null 2>&1; then
    echo "kept    secret/$name (exists)"
    return
  fi
  {
    printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n' "$name"
    printf '  labels:\n    app.kubernetes.io/part-of: cxrwatch\n'
    printf 'type: Opaque\nstringData:\n'
    local pair
    for pair in "$@"; do
      # Values are hex, JSON or URLs made here: single quotes are safe.
      printf "  %s: '%s'\n" "${pair%%=*}" "${pair#*=}"
    done
  } | kubectl -n "$namespace" create -f - >/dev/null
  echo "created secret/$name"
}

for service in imaging clinical joiner scorer alerter; do
  create_secret "cxrwatch-kafka-$service" \
    "username=cxrwatch-$service" "password=$(random_hex)"
done
create_secret cxrwatch-kafka-keda \
  username=cxrwatch-keda "password=$(random_hex)" sasl=scram_sha512 tls=enable

redis_password=$(random_hex)
create_secret cxrwatch-redis \
  "password=$redis_password" \
  "url=redis://:$redis_password@cxrwatch-redis:6379/0"

if ! kubectl -n "$namespace" get secret cxrwatch-api >/dev/null 2>&1; then
  admin_key=$(random_hex)
  admin_hash=$(printf '%s' "$admin_key" | sha256sum | cut -d' ' -f1)
  create_secret cxrwatch-api \
    "api-keys={\"$admin_hash\": {\"name\": \"admin\", \"role\": \"admin\"}}" \
    "token-secret=$(random_hex)"
  echo "API key of 'admin' (shown once; send it as X-API-Key): $admin_key" >&2
else
  echo "kept    secret/cxrwatch-api (exists)"
fi
