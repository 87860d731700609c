#!/usr/bin/env bash
# Generates the Python stubs for proto/streamhouse/v1/streamhouse.proto into
# gen/ (not committed). Run it with the Python that has requirements.txt
# installed (an activated venv, or PYTHON=/path/to/venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
rm -rf gen
mkdir gen
"$PYTHON" -m grpc_tools.protoc -I ../../proto \
  --python_out=gen --pyi_out=gen --grpc_python_out=gen \
  ../../proto/streamhouse/v1/streamhouse.proto
echo "generated $(find gen -name '*.py' | wc -l) modules in $(pwd)/gen"
