#!/usr/bin/env python3
"""End-to-end benchmark: read a whole log through the official MCP Python SDK client.

Starts `<bin> --config <temp config>` with `mcp.client.stdio.stdio_client`, calls `list_tools()` (so the SDK
validates every structuredContent against the tool's outputSchema: `ClientSession.call_tool` revalidates each
non-error result with `jsonschema`), then for each N times `execute_workflow seq 1 N` followed by `get_logs` pages
of the largest documented size until the result says `done`, checking that every line arrives exactly once and in
order. The baseline `seq 1 N | cat > /dev/null` is timed in the same run. Run it with `bash benches/e2e/run.sh`.

Exit status: 0 when every line arrived, 1 when a line was missing, duplicated, out of order or altered (the time
targets are only reported), 2 on a usage or setup error.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

TARGETS_S = {100_000: 0.13, 1_000_000: 1.3}  # reported, not enforced
SC_TO_TEXT_TARGET = 1.3  # serialized structuredContent / text content, one default page
LINES80_SC_TARGET = 20 * 1024  # serialized structuredContent of a default 200-line page of 80-byte lines
LONG_POLL_MS = 10_000  # wait_ms for a page that finds no new line (capped by the schema's maximum)
DEADLINE_S = 300  # a read that takes longer than this is a failure, not a hang

# A command printing N lines of exactly 79 characters plus "\n": "0000001 xxx...x" (7 digits, a space, 71 x).
LINES80_AWK = 'BEGIN{x=sprintf("%071d",0);gsub(/0/,"x",x);n=ARGV[1]+0;for(i=1;i<=n;i++)printf "%07d %s\\n",i,x}'

CONFIG = {
    "workflows": [
        {
            "name": "seq",
            "description": "seq 1 N",
            "command": ["seq", "1"],
            "params": [{"name": "n", "type": "integer", "minimum": 1, "positional": True, "required": True}],
        },
        {
            "name": "lines80",
            "description": "N lines of 79 characters",
            "command": ["awk", LINES80_AWK],
            "params": [{"name": "n", "type": "integer", "minimum": 1, "positional": True, "required": True}],
        },
    ]
}


class CheckFailed(Exception):
    """A line was missing, duplicated, out of order or altered."""


# --------------------------------------------------------------------------------------------------------------
# The page's `lines`: one string, one record per log line (see docs/tools.md, get_logs):
#   record = SEQ MARKS ["@" TIME] " " TEXT "\n"; MARKS in order "!" stderr, "~" partial, "-" context, "+" cut;
#   note   = "# ..." line (not a log line).


def page_records(sc: dict[str, Any]) -> str:
    lines = sc["lines"]
    if not isinstance(lines, str):
        raise CheckFailed(f"`lines` must be one string of records, got {type(lines).__name__}")
    return lines


def parse_records(lines: str) -> list[tuple[int | None, str, str | None, str]]:
    """(seq, marks, time, text) per record; a note is (None, "#", None, its text). Raises CheckFailed if malformed."""
    if lines and not lines.endswith("\n"):
        raise CheckFailed(f"`lines` does not end with a newline: ...{lines[-60:]!r}")
    out: list[tuple[int | None, str, str | None, str]] = []
    for rec in lines.split("\n")[:-1] if lines else []:
        if rec.startswith("# "):
            out.append((None, "#", None, rec[2:]))
            continue
        i = 0
        while i < len(rec) and rec[i].isdigit():
            i += 1
        if i == 0:
            raise CheckFailed(f"record without a seq: {rec[:80]!r}")
        seq = int(rec[:i])
        j = i
        while j < len(rec) and rec[j] in "!~-+":
            j += 1
        marks = rec[i:j]
        if marks != "".join(m for m in "!~-+" if m in marks) or len(set(marks)) != len(marks):
            raise CheckFailed(f"marks out of order or repeated: {rec[:80]!r}")
        ts = None
        if j < len(rec) and rec[j] == "@":
            k = rec.find(" ", j)
            if k < 0:
                raise CheckFailed(f"time without text separator: {rec[:80]!r}")
            ts, j = rec[j + 1 : k], k
        if j >= len(rec) or rec[j] != " ":
            raise CheckFailed(f"no space between seq/marks and text: {rec[:80]!r}")
        out.append((seq, marks, ts, rec[j + 1 :]))
    return out


# --------------------------------------------------------------------------------------------------------------
# Expected content of `seq 1 N`: line seq i holds str(i + 1). The whole expected record string is built before the
# timer starts, so checking a page in the timed region is one string comparison (plus a record count); a page that
# does not match byte for byte is parsed record by record to tell exactly what is wrong (or that it only held notes).


def seq_blob(n: int) -> str:
    return "".join([f"{i} {i + 1}\n" for i in range(n)])


def _digits_below(m: int) -> int:
    """Total decimal digits of the numbers 0..m-1."""
    total, p = m, 10
    while p < m:
        total += m - p
        p *= 10
    return total


def seq_offset(seq: int) -> int:
    """Offset of record `seq` in seq_blob(n): the length of the records 0..seq-1."""
    return _digits_below(seq) + _digits_below(seq + 1) - 1 + 2 * seq


def check_seq_page(sc: dict[str, Any], since: int, n: int, blob: str) -> int:
    """Checks one get_logs page of the seq workflow read from `since`; returns the seq expected next."""
    if sc.get("omitted"):
        raise CheckFailed(f"lines omitted (evicted) at since_seq {since}: {sc['omitted']}")
    lines = page_records(sc)
    k = lines.count("\n")
    if (not lines or lines.endswith("\n")) and since + k <= n and blob.startswith(lines, seq_offset(since)):
        expected = since + k  # fast path: exactly the records since..since+k-1, unmarked, text intact
    else:
        expected = since
        for seq, marks, _ts, text in parse_records(lines):
            if seq is None:
                if "omitted" in text or "evicted" in text:
                    raise CheckFailed(f"note at since_seq {since}: # {text}")
                continue
            if seq >= n:
                raise CheckFailed(f"seq {seq} beyond the {n} lines of seq 1 {n} (page from {since})")
            if seq != expected:
                kind = "duplicated" if seq < expected else "missing"
                raise CheckFailed(f"line(s) {kind}: expected seq {expected}, got seq {seq} (page from {since})")
            if marks:
                raise CheckFailed(f"seq {seq} has marks {marks!r} (stderr/partial/context/cut), expected none")
            if text != str(seq + 1):
                raise CheckFailed(f"seq {seq} holds {text[:40]!r}, expected {str(seq + 1)!r}")
            expected += 1
    if sc["next_seq"] != expected:
        raise CheckFailed(f"next_seq {sc['next_seq']} after a page from {since} ending before seq {expected}")
    return expected


# --------------------------------------------------------------------------------------------------------------


def result_bytes(result: Any) -> int:
    return len(result.model_dump_json(by_alias=True, exclude_none=True).encode())


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def text_of(result: Any) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def schema_maximum(prop: dict[str, Any]) -> int:
    """The `maximum` of a property schema, looking inside anyOf/oneOf/allOf."""
    if "maximum" in prop:
        return int(prop["maximum"])
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in prop.get(key, []):
            try:
                return schema_maximum(sub)
            except KeyError:
                pass
    raise KeyError("maximum")


async def call(session: ClientSession, name: str, args: dict[str, Any]) -> Any:
    result = await session.call_tool(name, args)
    if result.is_error:
        raise RuntimeError(f"{name} {json.dumps(args)} failed: {text_of(result)}")
    return result


async def read_seq(session: ClientSession, n: int, blob: str, page: dict[str, int]) -> tuple[float, int, int]:
    """One timed run: execute `seq 1 n`, read every line. Returns (seconds, calls, result bytes)."""
    sizing_s = 0.0  # time spent measuring result sizes, taken out of the wall time
    t0 = time.perf_counter()
    result = await call(session, "execute_workflow", {"workflow": "seq", "params": {"n": n}})
    t = time.perf_counter()
    calls, total = 1, result_bytes(result)
    sizing_s += time.perf_counter() - t
    eid = result.structured_content["execution_id"]
    since = 0
    while True:
        result = await call(session, "get_logs", {"execution_id": eid, "since_seq": since, **page})
        t = time.perf_counter()
        calls += 1
        total += result_bytes(result)
        sizing_s += time.perf_counter() - t
        sc = result.structured_content
        since = check_seq_page(sc, since, n, blob)
        if sc["done"] and not sc["has_more"]:
            break
        if time.perf_counter() - t0 > DEADLINE_S:
            raise CheckFailed(f"not done after {DEADLINE_S} s: {since} of {n} lines read, state {sc['state']}")
    elapsed = time.perf_counter() - t0 - sizing_s
    if since != n:
        raise CheckFailed(f"done after {since} lines, expected {n}")
    if sc.get("total_lines", n) != n or sc["state"] != "succeeded":
        raise CheckFailed(f"finished with total_lines {sc.get('total_lines')}, state {sc['state']}; expected {n}")
    return elapsed, calls, total


def baseline(n: int) -> float:
    t0 = time.perf_counter()
    subprocess.run(f"seq 1 {n} | cat > /dev/null", shell=True, check=True)
    return time.perf_counter() - t0


def validation_state(session: ClientSession) -> str:
    """Shows that output-schema validation is on, from the SDK's own caches (private; best effort)."""
    schemas = getattr(session, "_tool_output_schemas", None)
    validators = getattr(session, "_tool_output_validators", None)
    if schemas is None or validators is None:
        return "unknown (SDK internals changed)"
    with_schema = sorted(k for k, v in schemas.items() if v is not None)
    return f"on; output schemas for {len(with_schema)} tools, validators compiled for: {', '.join(sorted(validators))}"


async def main_async(args: argparse.Namespace, config_path: str) -> int:
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    params = StdioServerParameters(
        command=args.bin,
        # Durable history (the default mode) in a state directory of this run's own.
        args=["--config", config_path, "--state-dir", os.path.join(os.path.dirname(config_path), "state")],
        env={"WORKFLOW_MCP_LOG": os.environ.get("WORKFLOW_MCP_LOG", "warn")}
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        props = tools["get_logs"].input_schema["properties"]
        page = {
            "max_lines": schema_maximum(props["max_lines"]),
            "max_bytes": schema_maximum(props["max_bytes"]),
            "wait_ms": min(LONG_POLL_MS, schema_maximum(props["wait_ms"])),
        }
        print(f"server {init.server_info.name} {init.server_info.version}, protocol {init.protocol_version}; "
              f"mcp SDK {importlib.metadata.version('mcp')}")
        print(f"page: {json.dumps(page)}; repetitions {args.reps}, median reported")

        # Warm-up (not timed): compiles the SDK's output-schema validators, pages in the server and seq.
        await read_seq(session, 1000, seq_blob(1000), page)
        print(f"output-schema validation: {validation_state(session)}")

        rows = []
        last_eid = None
        for n in sizes:
            blob = seq_blob(n)
            runs, base = [], []
            for _ in range(args.reps):
                base.append(baseline(n))
                runs.append(await read_seq(session, n, blob, page))
            times = [r[0] for r in runs]
            rows.append((n, statistics.median(times), min(times), max(times), statistics.median(base), runs[-1][1], runs[-1][2]))
            del blob

        print()
        print(f"{'lines':>9} {'median s':>9} {'(min-max)':>15} {'baseline s':>10} {'ratio':>7} {'calls':>6} {'MB results':>10}  target")
        for n, med, lo, hi, b, calls, nbytes in rows:
            target = TARGETS_S.get(n)
            verdict = f"<= {target} s: {'met' if med <= target else 'MISSED'}" if target else ""
            print(f"{n:>9} {med:>9.3f} {f'({lo:.3f}-{hi:.3f})':>15} {b:>10.4f} {med / b:>7.1f} {calls:>6} {nbytes / 1e6:>10.2f}  {verdict}")

        # Page shape 1: one full default page of the finished seq run (only execution_id: default budgets).
        res = await call(session, "execute_workflow", {"workflow": "seq", "params": {"n": 1000}, "wait_ms": 30000})
        last_eid = res.structured_content["execution_id"]
        res = await call(session, "get_logs", {"execution_id": last_eid})
        sc_b, text_b = len(compact(res.structured_content)), len(text_of(res).encode())
        k = page_records(res.structured_content).count("\n")
        print()
        print(f"default seq page ({k} lines): structuredContent {sc_b} B, text {text_b} B, ratio {sc_b / text_b:.2f} "
              f"(target <= {SC_TO_TEXT_TARGET}: {'met' if sc_b / text_b <= SC_TO_TEXT_TARGET else 'MISSED'})")

        # Page shape 2: a default page of lines80 (200 lines of 80 bytes including the newline).
        res = await call(session, "execute_workflow", {"workflow": "lines80", "params": {"n": 1000}, "wait_ms": 30000})
        res = await call(session, "get_logs", {"execution_id": res.structured_content["execution_id"]})
        recs = [r for r in parse_records(page_records(res.structured_content)) if r[0] is not None]
        bad = [r for r in recs if len(r[3]) != 79 or r[1]]
        if len(recs) != 200 or bad or [r[0] for r in recs] != list(range(200)):
            raise CheckFailed(f"lines80 default page: {len(recs)} records, {len(bad)} not 79 unmarked chars, "
                              f"seqs {recs[0][0] if recs else None}..{recs[-1][0] if recs else None}")
        sc_b = len(compact(res.structured_content))
        print(f"default lines80 page (200 lines x 80 B = 16000 B of log): structuredContent {sc_b} B "
              f"(target <= {LINES80_SC_TARGET}: {'met' if sc_b <= LINES80_SC_TARGET else 'MISSED'}), "
              f"whole result {result_bytes(res)} B, text {len(text_of(res).encode())} B")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="path to the workflow-mcp binary")
    ap.add_argument("--quick", action="store_true", help="only 100000 lines")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per size (median reported; default 5)")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"read_all.py: {args.bin} is not an executable file", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="workflow-mcp-e2e-") as tmp:
        config_path = os.path.join(tmp, "workflows.json")
        with open(config_path, "w") as f:
            json.dump(CONFIG, f)
        try:
            return anyio.run(main_async, args, config_path)
        except Exception as e:
            failed = find_check_failed(e)
            if failed is None:
                raise
            print(f"FAIL: {failed}", file=sys.stderr)
            return 1


def find_check_failed(e: BaseException) -> CheckFailed | None:
    """The CheckFailed in `e`, which the SDK's task groups may have wrapped in an ExceptionGroup."""
    if isinstance(e, CheckFailed):
        return e
    for sub in getattr(e, "exceptions", ()):
        if (found := find_check_failed(sub)) is not None:
            return found
    return None


if __name__ == "__main__":
    sys.exit(main())
