#!/usr/bin/env bash
# Fills .dev/ for bench/scaling-device.sh on this (networked) machine: the Debian packages the
# device run unpacks with dpkg -x (nginx, wrk, the OpenSSL headers tlsio builds against, their
# libraries) and the wheels of pyroute's runtime dependencies and Cython for the device's
# Python (PYVER, default this machine's python3). Then run on the device, from the tree:
#   bash bench/scaling-device.sh       (carry .dev; OUT gets scaling.txt / scaling.json)
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
mkdir -p .dev/deb .dev/whl
(cd .dev/deb && apt-get download nginx nginx-common wrk libluajit2-5.1-2 libluajit2-5.1-common \
    libssl-dev libssl3 2>&1 | tail -2)
deps=$(python3 -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb"))
print(" ".join(x.split(";")[0].replace(" ", "") for x in d["project"]["dependencies"]
               if "python_version <" not in x))')
# shellcheck disable=SC2086
python3 -m pip download -q --only-binary=:all: --python-version "$PYVER" -d .dev/whl \
    Cython setuptools wheel $deps
du -sh .dev
