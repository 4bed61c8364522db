#!/usr/bin/env python3
"""Load test of a running `sd-worker serve` (a benchmark, not a test). Python stdlib only.

Submits --jobs jobs from --clients concurrent clients (each: submit, follow the SSE stream to [DONE], next),
retrying 429s after Retry-After, then prints throughput, submit latency percentiles and the server's
overhead per job, i.e. the time a job costs beyond what the model spent generating it.

    cargo run -p sd-worker -- serve --model tests/fixtures/models/tiny-sd1 &
    python3 tools/loadtest.py --url http://127.0.0.1:8600 --jobs 200

Without the inference core, the weightless fake backend measures the service alone:
    cargo run -p sd-worker --features fake-backend -- serve --model fake:0ms &
"""

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class Client:
    def __init__(self, url, api_key):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def connect(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=600)

    def submit(self, body):
        """Returns (job_id, latency_s, retries)."""
        retries = 0
        while True:
            connection = self.connect()
            started = time.perf_counter()
            connection.request("POST", "/v1/jobs", json.dumps(body), self.headers)
            response = connection.getresponse()
            payload = response.read()
            latency = time.perf_counter() - started
            connection.close()
            if response.status == 429:
                retries += 1
                time.sleep(float(response.getheader("Retry-After", "1")))
                continue
            if response.status != 202:
                raise RuntimeError(f"submit: {response.status} {payload[:300]!r}")
            return json.loads(payload)["job_id"], latency, retries

    def follow(self, job_id):
        """Reads the SSE stream to [DONE]; returns the terminal event."""
        connection = self.connect()
        connection.request("GET", f"/v1/jobs/{job_id}/stream", headers=self.headers)
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"stream: {response.status}")
        event, terminal = None, None
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                if event in ("complete", "error", "cancelled"):
                    terminal = json.loads(data)
        connection.close()
        return terminal


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8600")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="width = height")
    parser.add_argument("--api-key")
    args = parser.parse_args()

    client = Client(args.url, args.api_key)
    lock = threading.Lock()
    next_job = [0]
    results, failures = [], []

    def worker():
        while True:
            with lock:
                if next_job[0] >= args.jobs:
                    return
                index = next_job[0]
                next_job[0] += 1
            body = {"operation": "image_generation", "prompt": f"load test {index}", "steps": args.steps,
                    "width": args.size, "height": args.size, "seed": index}
            try:
                started = time.perf_counter()
                job_id, latency, retries = client.submit(body)
                terminal = client.follow(job_id)
                elapsed = time.perf_counter() - started
                if not terminal or "timings" not in terminal:
                    raise RuntimeError(f"job {job_id} ended with {terminal}")
                with lock:
                    results.append((latency, retries, elapsed, terminal["timings"]))
            except Exception as error:  # a benchmark reports failures, it does not stop on them
                with lock:
                    failures.append(str(error))

    wall_started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall_started

    if not results:
        print(f"all {len(failures)} jobs failed; first: {failures[:1]}")
        return 1
    submit_ms = [latency * 1000 for latency, _, _, _ in results]
    generate_ms = [timings["generate_ms"] for _, _, _, timings in results]
    # Per job, what the client waited beyond queueing and generation: HTTP, validation, PNG encoding, SSE.
    overhead_ms = [elapsed * 1000 - timings["queue_ms"] - timings["generate_ms"]
                   for _, _, elapsed, timings in results]
    print(f"jobs:                 {len(results)} ok, {len(failures)} failed, "
          f"{sum(retries for _, retries, _, _ in results)} retries after 429")
    print(f"wall time:            {wall:.2f} s with {args.clients} clients "
          f"({args.size}x{args.size}, {args.steps} steps)")
    print(f"throughput:           {len(results) / wall:.1f} jobs/s")
    print(f"submit latency:       p50 {percentile(submit_ms, 0.50):.2f} ms, p99 {percentile(submit_ms, 0.99):.2f} ms")
    print(f"generation (model):   mean {statistics.mean(generate_ms):.2f} ms per job")
    print(f"server overhead/job:  mean {statistics.mean(overhead_ms):.2f} ms, "
          f"p99 {percentile(overhead_ms, 0.99):.2f} ms (client time beyond queue wait + generation)")
    print(f"model idle per job:   {wall * 1000 / len(results) - statistics.mean(generate_ms):.2f} ms "
          f"(wall / jobs - mean generation)")
    if failures:
        print(f"first failure: {failures[0]}")
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
