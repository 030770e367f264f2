#!/usr/bin/env python3
"""bench/scaleout's driver: job throughput and enqueue-to-start over real aviary instances.

  scaleout.py throughput --submit ADDR[,ADDR...] --jobs N --clients C
      submits N `sleep50` jobs round-robin over the instances with C client threads, waits for
      all to finish, prints jobs/s from the first submission to the last finish.
  scaleout.py latency --submit ADDR --read ADDR --jobs N
      submits N `noop` jobs one at a time (each waits for the previous to start) and prints the
      p50/p99 of started_at - created_at as the store recorded them, and where they ran.
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time


def request(addr, method, path, body=None):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None


def submit(addr, node, action, n):
    # The param makes each job distinct: an identical active job would be returned instead.
    status, body = request(addr, "POST", f"/api/v1/nodes/{node}/actions/{action}",
                           {"params": {"n": str(n)}})
    if status != 202:
        raise SystemExit(f"submit to {addr} failed: {status} {body}")
    return body["job"]["id"]


def job(addr, job_id):
    status, body = request(addr, "GET", f"/api/v1/jobs/{job_id}")
    if status != 200:
        raise SystemExit(f"job {job_id}: {status} {body}")
    return body


def millis(stamp):
    # 2026-12-04T10:00:00.123Z
    seconds = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return seconds * 1000 + int(stamp[20:23])


def throughput(args):
    addrs = args.submit.split(",")
    ids = []
    lock = threading.Lock()
    counter = iter(range(args.jobs))

    def client():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            job_id = submit(addrs[i % len(addrs)], f"node-{i % args.nodes}", "sleep50", i)
            with lock:
                ids.append(job_id)

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pending = set(ids)
    finished = {}
    deadline = time.monotonic() + 600
    while pending and time.monotonic() < deadline:
        status, body = request(addrs[0], "GET", "/api/v1/jobs?limit=1000&state=succeeded")
        for entry in body["jobs"]:
            if entry["id"] in pending:
                pending.discard(entry["id"])
                finished[entry["id"]] = entry
        if pending:
            time.sleep(0.05)
    elapsed = time.monotonic() - start
    if pending:
        raise SystemExit(f"{len(pending)} jobs did not finish")
    where = {}
    for entry in finished.values():
        where[entry["instance"]] = where.get(entry["instance"], 0) + 1
    print(f"jobs={args.jobs} seconds={elapsed:.2f} jobs_per_s={args.jobs / elapsed:.1f} "
          f"ran_on={json.dumps(where, sort_keys=True)}")


def latency(args):
    delays = []
    where = {}
    for i in range(args.jobs):
        job_id = submit(args.submit, f"node-{i % args.nodes}", "noop", f"{args.submit}-{i}")
        while True:
            entry = job(args.read, job_id)
            if entry["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.005)
        delays.append(millis(entry["started_at"]) - millis(entry["created_at"]))
        where[entry["instance"]] = where.get(entry["instance"], 0) + 1
    delays.sort()
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    print(f"jobs={args.jobs} enqueue_to_start_ms p50={statistics.median(delays):.0f} "
          f"p99={p99:.0f} ran_on={json.dumps(where, sort_keys=True)}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["throughput", "latency"])
    parser.add_argument("--submit", required=True)
    parser.add_argument("--read")
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--nodes", type=int, default=32)
    args = parser.parse_args()
    args.read = args.read or args.submit.split(",")[0]
    throughput(args) if args.mode == "throughput" else latency(args)


if __name__ == "__main__":
    sys.exit(main())
