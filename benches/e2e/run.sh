#!/usr/bin/env bash
# End-to-end benchmark through the official MCP Python SDK client: reads every line of `seq 1 N` with get_logs.
#   bash benches/e2e/run.sh [--quick] [--reps R]
# WORKFLOW_MCP_BIN=/path/to/workflow-mcp skips the build and benchmarks that binary.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/target/bench-venv"
mcp_version="2.3.0"

if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$mcp_version')" 2>/dev/null; then
    echo "run.sh: installing mcp==$mcp_version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mcp==$mcp_version"
fi

if [[ -n "${WORKFLOW_MCP_BIN:-}" ]]; then
    bin="$WORKFLOW_MCP_BIN"
else
    (cd "$repo" && cargo build --release --quiet)
    bin="${CARGO_TARGET_DIR:-$repo/target}/release/workflow-mcp"
fi

exec "$venv/bin/python" "$here/read_all.py" --bin "$bin" "$@"
