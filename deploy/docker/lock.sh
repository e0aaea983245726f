#!/usr/bin/env bash
# Re-pin the images' dependencies after a change in pyproject.toml:
#
#   bash deploy/docker/lock.sh        (needs uv: pip install uv)
#
# Resolves for the image's platform (CPython 3.11, x86_64 manylinux), with
# sha256 hashes of every file PyPI has for each pinned version, so that
# `pip install --require-hashes` in the Dockerfile installs exactly these.
set -euo pipefail
cd "$(dirname "$0")/../.."

compile() {
  UV_NO_CONFIG=1 uv pip compile "$@" --generate-hashes --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --no-header --annotation-style line \
    --quiet
}

{
  echo "# Runtime dependencies of every cxrwatch image, pinned with hashes, for"
  echo "# CPython 3.11 on x86_64 manylinux. Made by deploy/docker/lock.sh from"
  echo "# pyproject.toml: edit that, not this. tests/deploy/test_dockerfile.py fails"
  echo "# when this file no longer satisfies pyproject.toml."
  compile pyproject.toml | sed 's/# via -r pyproject.toml/# via cxrwatch/'
} > deploy/docker/requirements.lock

{
  echo "# The build backend named in pyproject.toml's [build-system], pinned with"
  echo "# hashes. Made by deploy/docker/lock.sh."
  python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
    | compile - | sed 's/# via -r -/# via pyproject.toml [build-system]/'
} > deploy/docker/build-requirements.lock

echo "wrote deploy/docker/requirements.lock and build-requirements.lock"
