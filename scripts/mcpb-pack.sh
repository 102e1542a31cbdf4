#!/usr/bin/env bash
# Packs an MCPB bundle (Claude Desktop's one-click install): packaging/mcpb/manifest.json plus the given server
# binary as server/workflow-mcp, with the mcpb CLI from npm ($WORKFLOW_MCP_NPM_BIN, else target/npm's).
# Usage: scripts/mcpb-pack.sh BINARY OUTPUT.mcpb
set -euo pipefail
binary="$(realpath "$1")"
output="$2"
root="$(cd "$(dirname "$0")/.." && pwd)"
mcpb="${WORKFLOW_MCP_NPM_BIN:-$root/target/npm/node_modules/.bin}/mcpb"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/server"
cp "$root/packaging/mcpb/manifest.json" "$stage/"
cp "$root/LICENSE" "$stage/"
install -m 0755 "$binary" "$stage/server/workflow-mcp"
"$mcpb" validate "$stage/manifest.json"
mkdir -p "$(dirname "$output")"
"$mcpb" pack "$stage" "$output"
echo "$output"
