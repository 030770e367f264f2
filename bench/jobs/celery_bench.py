#!/usr/bin/python3
"""bench/jobs: the peer figure — Celery 5 with a Redis broker doing a no-op task.

   celery_bench.py --dir DIR [--single N] [--burst N] [--clients C]

Starts its own redis-server on a free loopback port (no persistence: Celery keeps nothing) and
a Celery worker (prefork, 2 processes, results ignored), then measures what job_bench measures
for aviary:

- single: N no-op tasks one at a time; enqueue-to-start = the task's start time minus the time
  just before apply_async (same machine clock); the next task is sent once the previous one has
  reported.
- burst: N no-op tasks sent at once by C client threads; enqueue-to-start p50/p99 and
  throughput = N / (last task end - first send).

The task reports (its start and end) with one RPUSH to the same Redis, the least a task must do
for anyone to know it ran; aviary's no-op writes its whole job record and output durably.
"""
import argparse
import os
import socket
import subprocess
import sys
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    rank = int(p / 100.0 * (len(values) - 1) + 0.5)
    return values[min(rank, len(values) - 1)]


TASKS = '''
import time
import redis
from celery import Celery

app = Celery("bench", broker="redis://127.0.0.1:{port}/0")
app.conf.task_ignore_result = True
app.conf.worker_prefetch_multiplier = 4
report = redis.Redis(host="127.0.0.1", port={port}, db=1)

@app.task
def tick(sent):
    start = time.time()
    report.rpush("done", "%f %f %f" % (sent, start, time.time()))
'''


def wait_for(condition, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise RuntimeError("gave up waiting for " + what)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    port = free_port()
    with open(os.path.join(args.dir, "benchtasks.py"), "w") as f:
        f.write(TASKS.replace("{port}", str(port)))
    log = open(os.path.join(args.dir, "celery.log"), "w")
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", args.dir],
        stdout=log, stderr=log)
    worker = None
    try:
        sys.path.insert(0, args.dir)
        import redis
        r = redis.Redis(host="127.0.0.1", port=port, db=1)
        wait_for(lambda: _ping(r), 10, "redis-server")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "benchtasks", "worker", "-P", "prefork",
             "-c", "2", "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=args.dir, stdout=log, stderr=log)
        import benchtasks
        # Warm up: the worker is ready when a task comes back.
        r.delete("done")
        benchtasks.tick.apply_async(args=(time.time(),))
        wait_for(lambda: r.llen("done") >= 1, 60, "the celery worker")
        r.delete("done")

        starts = []
        round_trips = []
        for i in range(args.single):
            t0 = time.time()
            benchtasks.tick.apply_async(args=(t0,))
            popped = r.blpop("done", timeout=30)
            if popped is None:
                raise RuntimeError("a task did not report within 30 s")
            sent, start, end = map(float, popped[1].split())
            round_trips.append((time.time() - t0) * 1000)
            starts.append((start - sent) * 1000)
        print("\n== celery single: %d no-op tasks one at a time (prefork 2, Redis broker)"
              % args.single)
        print("  %-58s %.2f / %.2f ms" % ("enqueue-to-start p50 / p99",
                                          percentile(starts, 50), percentile(starts, 99)))
        print("  %-58s %.2f / %.2f ms" % ("send-to-reported round trip p50 / p99",
                                          percentile(round_trips, 50),
                                          percentile(round_trips, 99)))

        r.delete("done")
        counter = {"next": 0}
        lock = threading.Lock()

        def client():
            while True:
                with lock:
                    i = counter["next"]
                    counter["next"] += 1
                if i >= args.burst:
                    return
                benchtasks.tick.apply_async(args=(time.time(),))

        t0 = time.time()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        send_ms = (time.time() - t0) * 1000
        wait_for(lambda: r.llen("done") >= args.burst, 300, "the burst")
        rows = [tuple(map(float, x.split())) for x in r.lrange("done", 0, -1)]
        first_sent = min(x[0] for x in rows)
        last_end = max(x[2] for x in rows)
        burst_starts = [(x[1] - x[0]) * 1000 for x in rows]
        span = last_end - first_sent
        print("\n== celery burst: %d no-op tasks sent by %d clients at once, prefork 2"
              % (args.burst, args.clients))
        print("  %-58s %.0f ms (%.0f sends/s, nothing durable)"
              % ("sent in", send_ms, args.burst / (send_ms / 1000)))
        print("  %-58s %.0f / %.0f ms" % ("enqueue-to-start p50 / p99",
                                          percentile(burst_starts, 50),
                                          percentile(burst_starts, 99)))
        print("  %-58s %.0f tasks/s (%d tasks in %.2f s)"
              % ("throughput, first send to last finished", args.burst / span, args.burst,
                 span))
        return 0
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


def _ping(r):
    try:
        return r.ping()
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(main())
