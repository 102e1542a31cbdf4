#!/usr/bin/env bash
# The crate as crates.io would get it, and the bundle as Claude Desktop would: package the crate (cargo builds the
# packaged sources as the install builds them), ask crates.io whether it would take it, install the packaged crate into a fresh CARGO_HOME,
# run the example session with the installed binary, then pack that binary into an MCPB bundle with the mcpb CLI
# (from npm, in $WORKFLOW_MCP_NPM_BIN) as target/mcpb/workflow-mcp.mcpb. .ci/run calls it; it needs the network
# (crates.io) for the dry run and the fresh install.
set -euo pipefail
cd "$(dirname "$0")/.."

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"

# The install below builds exactly the packaged sources (in release, as a user gets them), so packaging does not
# build them a second time; the dry run checks what crates.io would say.
cargo package --locked --no-verify
cargo publish --dry-run --locked --no-verify
# The .crate as crates.io would store it, unpacked where `cargo package` itself would have left it.
rm -rf "target/package/workflow-mcp-$version"
tar -xzf "target/package/workflow-mcp-$version.crate" -C target/package

# A fresh CARGO_HOME (made anew each run, kept after it: tests/project.rs runs the installed binary in a fixture
# project): nothing of the developer's (config, registry cache, installed binaries) helps. The build of its
# dependencies is cached between runs (and clones) in .ci/run's cache folder, else in target/install.
install_home="$PWD/target/install-home"
rm -rf "$install_home"
mkdir -m 700 "$install_home"
CARGO_HOME="$install_home" CARGO_TARGET_DIR="${WORKFLOW_MCP_CI_CACHE:-target}/install" \
  cargo install --locked --path "target/package/workflow-mcp-$version"
installed="$install_home/bin/workflow-mcp"

# The README's demo, with the installed binary: four answers, both workflows succeeded.
answers="$("$installed" --config examples/workflows.json --ephemeral < examples/session.jsonl)"
results="$(grep -c '"result"' <<<"$answers" || true)"
succeeded="$(grep -c 'succeeded, exit code 0' <<<"$answers" || true)"
if [[ "$results" != 4 || "$succeeded" != 2 ]]; then
  echo "package-check: the installed binary answered the example session with $results results and" \
    "$succeeded successes (want 4 and 2):" >&2
  echo "$answers" >&2
  exit 1
fi
"$installed" --version

# The MCPB bundle of the installed binary, for this platform.
bash scripts/mcpb-pack.sh "$installed" target/mcpb/workflow-mcp.mcpb
