#!/usr/bin/env bash
# Runs bench/scaling.py on a bare 16-core machine that reaches no registry (the lent device).
# Expects, carried beside the tree in .dev/ (bench/scaling-device-prepare.sh makes it here):
# deb/*.deb (nginx, nginx-common, wrk, libluajit2, libssl-dev and their libraries, from
# `apt-get download`) and whl/*.whl (pyroute's runtime deps and Cython for its Python).
# Builds the Cython engine in place (engine/tlsio.pyx against the OpenSSL headers of the
# unpacked libssl-dev, linked to the system libssl.so.3 its Python's ssl uses) and links
# pyroute/_engine -> engine for a source-tree import.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
root=/tmp/debroot; mkdir -p "$root"
for f in .dev/deb/*.deb; do dpkg -x "$f" "$root"; done
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .dev/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
export CFLAGS="-I$root/usr/include -I$root/usr/include/x86_64-linux-gnu${CFLAGS:+ $CFLAGS}"
export LDFLAGS="-L$root/usr/lib/x86_64-linux-gnu${LDFLAGS:+ $LDFLAGS}"
python3 setup.py -q build_ext --inplace -j 16 > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
[ -e pyroute/_engine ] || ln -s ../engine pyroute/_engine
python3 -c "import pyroute.rules, pyroute.http1; print('pyroute imports')"
nproc; "$root/usr/sbin/nginx" -v; "$root/usr/bin/wrk" -v | head -1 || true
python3 bench/scaling.py --nginx "$root/usr/sbin/nginx" --wrk "$root/usr/bin/wrk" \
    --workers "${WORKERS:-1,2,4,8}" --duration "${DURATION:-4}" --rounds "${ROUNDS:-2}" \
    --json "$OUT/scaling.json" 2>&1 | tee "$OUT/scaling.txt"
