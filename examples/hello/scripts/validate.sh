#!/bin/sh
# Passes once the page answers, within 10 seconds.
set -eu
port="${HELLO_PORT:-8080}"
for _ in $(seq 1 50); do
  if python3 -c "import urllib.request,sys; sys.exit(0 if b'hello' in urllib.request.urlopen('http://127.0.0.1:$port/', timeout=1).read() else 1)" 2>/dev/null; then
    exit 0
  fi
  sleep 0.2
done
echo "hello did not answer on port $port" >&2
exit 1
