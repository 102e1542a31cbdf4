#!/usr/bin/env python3
"""Slurm latencies through the server, on the cluster of scripts/slurm-cluster.sh:

  python3 benches/slurm/latency.py [--runs N] [--bin target/release/workflow-mcp]

- submit -> running: from the execute_workflow call to the first get_status that says `running` (and to the
  job's first line in get_logs), for a job that prints a line and holds;
- cancel -> gone: the cancel_execution call (TERM, then KILL after the grace if needed) until it answers
  `cancelled`, and until `squeue` no longer lists the job.
Medians (and min-max) of N runs, raw JSON-RPC over the server's stdin/stdout, stdlib only.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time


class Server:
    def __init__(self, binary, config, state):
        self.p = subprocess.Popen([binary, "--config", config, "--state-dir", state], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.n = 0
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "latency", "version": "1"}})
        self.p.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")

    def request(self, method, params):
        self.n += 1
        self.p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": self.n, "method": method, "params": params}) + "\n")
        while True:
            msg = json.loads(self.p.stdout.readline())
            if msg.get("id") == self.n:
                return msg["result"]

    def call(self, tool, args):
        r = self.request("tools/call", {"name": tool, "arguments": args})
        if r.get("isError"):
            raise SystemExit(f"{tool} failed: {r['content'][0]['text']}")
        return r["structuredContent"]

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def in_squeue(job):
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i"], capture_output=True, text=True).stdout
    return out.strip() == job


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "../../target/release/workflow-mcp"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "c.json")
        with open(config, "w") as f:
            json.dump({"workflows": [
                {"name": "hold", "command": ["/bin/sh", "-c", "echo ready; exec sleep 600"],
                 "runtime": {"type": "slurm", "partition": "debug"}},
                {"name": "stubborn", "command": ["/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"],
                 "runtime": {"type": "slurm", "partition": "debug"}},
            ]}, f)
        s = Server(args.bin, config, os.path.join(tmp, "state"))
        rows = {k: [] for k in ["submit (execute answers)", "submit -> running", "submit -> first line",
                                "cancel -> cancelled", "cancel -> gone from squeue",
                                "cancel TERM-ignoring (grace 500 ms) -> gone"]}
        for _ in range(args.runs):
            t0 = time.monotonic()
            st = s.call("execute_workflow", {"workflow": "hold"})
            rows["submit (execute answers)"].append(time.monotonic() - t0)
            eid, job = st["execution_id"], st["job"]["id"]
            while s.call("get_status", {"execution_id": eid})["state"] != "running":
                time.sleep(0.02)
            rows["submit -> running"].append(time.monotonic() - t0)
            while not s.call("get_logs", {"execution_id": eid, "wait_ms": 5000})["lines"]:
                pass
            rows["submit -> first line"].append(time.monotonic() - t0)
            t1 = time.monotonic()
            st = s.call("cancel_execution", {"execution_id": eid, "grace_ms": 5000})
            assert st["state"] == "cancelled", st
            rows["cancel -> cancelled"].append(time.monotonic() - t1)
            while in_squeue(job):
                time.sleep(0.02)
            rows["cancel -> gone from squeue"].append(time.monotonic() - t1)
            st = s.call("execute_workflow", {"workflow": "stubborn"})
            eid, job = st["execution_id"], st["job"]["id"]
            while not s.call("get_logs", {"execution_id": eid, "wait_ms": 5000})["lines"]:
                pass
            t2 = time.monotonic()
            s.call("cancel_execution", {"execution_id": eid, "grace_ms": 500})
            while in_squeue(job):
                time.sleep(0.02)
            rows["cancel TERM-ignoring (grace 500 ms) -> gone"].append(time.monotonic() - t2)
        s.close()
    print(f"Slurm latencies through workflow-mcp, {args.runs} runs (median, min-max):")
    for name, v in rows.items():
        print(f"  {name:<45} {statistics.median(v):6.2f} s  ({min(v):.2f}-{max(v):.2f})")


if __name__ == "__main__":
    sys.exit(main())
