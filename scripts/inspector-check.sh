#!/usr/bin/env bash
# An independent client reads the server's resources: the MCP Inspector's CLI (installed from npm into the
# target directory on first use; needs the npm registry and node) starts the server for each call, on one state
# directory, so what one call started the next one lists and reads from the history.
#
#   bash scripts/inspector-check.sh            # prints each check and "N passed, N failed"
#
# Not part of `cargo test`: it needs the network the first time (npm install).
set -euo pipefail
cd "$(dirname "$0")/.."

INSPECTOR_VERSION="${INSPECTOR_VERSION:-2.12.0}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --quiet --bins
bin="$target/debug/workflow-mcp"
fake="$target/debug/fake-workflow"

prefix="$target/inspector-$INSPECTOR_VERSION"
if [ ! -x "$prefix/node_modules/.bin/mcp-inspector" ]; then
  npm install --no-audit --no-fund --loglevel=error --prefix "$prefix" \
    "@modelcontextprotocol/inspector@$INSPECTOR_VERSION" >/dev/null
fi
inspector="$prefix/node_modules/.bin/mcp-inspector"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat >"$work/config.json" <<EOF
{"workflows": [{"name": "hello", "description": "Prints three lines",
                "command": ["$(realpath "$fake")", "out", "hello", "err", "a warning", "out", "bye"]}]}
EOF

# One Inspector call (a fresh server process on the shared state directory); its JSON on stdout.
call() {
  "$inspector" --cli "$@" -- "$(realpath "$bin")" --config "$work/config.json" --state-dir "$work/state" \
    2>>"$work/stderr"
}

passed=0
failed=0
# check NAME JSON JS-EXPRESSION: the expression, with `r` the parsed JSON, must be true.
check() {
  if node -e 'const r = JSON.parse(process.argv[1]); if (!(eval(process.argv[2]))) process.exit(1)' "$2" "$3"; then
    echo "ok   $1"
    passed=$((passed + 1))
  else
    echo "FAIL $1: $3"
    echo "     got: $2" | head -c 2000
    echo
    failed=$((failed + 1))
  fi
}

started="$(call --method tools/call --tool-name execute_workflow --tool-arg workflow=hello --tool-arg wait_ms=50000)"
check "tools/call execute_workflow runs hello" "$started" 'r.structuredContent.state === "succeeded"'
id="$(node -e 'console.log(JSON.parse(process.argv[1]).structuredContent.execution_id)' "$started")"

listed="$(call --method resources/list)"
check "resources/list starts with the catalog" "$listed" 'r.resources[0].uri === "workflow://workflows"'
check "resources/list has the execution's status, titled for a person" "$listed" \
  "r.resources.some(x => x.uri === 'workflow://executions/$id' && /^hello: succeeded, started \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC$/.test(x.title))"
check "resources/list has the execution's output" "$listed" \
  "r.resources.some(x => x.uri === 'workflow://executions/$id/logs' && x.mimeType === 'text/plain')"

status="$(call --method resources/read --uri "workflow://executions/$id")"
check "resources/read gives the status as JSON" "$status" \
  "r.contents[0].mimeType === 'application/json' && JSON.parse(r.contents[0].text).execution_id === '$id' && JSON.parse(r.contents[0].text).state === 'succeeded'"

logs="$(call --method resources/read --uri "workflow://executions/$id/logs")"
check "resources/read gives the output in the compact form" "$logs" \
  'r.contents[0].text === "0 hello\n1 bye\n2! a warning\n" || r.contents[0].text === "0 hello\n1! a warning\n2 bye\n" || r.contents[0].text === "0! a warning\n1 hello\n2 bye\n"'

templates="$(call --method resources/templates/list)"
check "resources/templates/list has both templates" "$templates" \
  'r.resourceTemplates.map(t => t.uriTemplate).join(" ") === "workflow://executions/{execution_id} workflow://executions/{execution_id}/logs"'

echo "inspector $INSPECTOR_VERSION, node $(node --version): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
