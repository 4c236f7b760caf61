#!/usr/bin/env python3
"""The load generator against a real zigzag-server on loopback (ctest: deploy_loadtest).

- Its counts of requests, prompt tokens, generated tokens and KV bytes saved equal the deltas of
  the server's own Prometheus counters over the same run, in closed-loop and Poisson modes,
  and it writes the CSV, JSON and PNG outputs.
- The Docker HEALTHCHECK script answers SERVING / not for the server's health services.
- Non-loopback targets are refused; a short sweep writes its Markdown report.

The model is models/zigzag-tiny when it exists, else a small random checkpoint in --work-dir.
Servers listen on free ports (port 0, read back from the log) and are always stopped.

  test_loadtest.py --repo-root R --server-binary S --make-checkpoint M --work-dir W -- [-v]
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import time
import unittest

import deploy_test_support as support
from deploy_test_support import PATHS, repo

import local_server

PYTHON = sys.executable
COUNTERS = ("zigzag_request_success_total", "zigzag_prompt_tokens_total",
            "zigzag_generation_tokens_total", "zigzag_kv_bytes_saved_total",
            "zigzag_request_failure_total")


def loadtest(*args, timeout=90):
    command = [PYTHON, repo("deploy", "loadtest", "loadtest.py")] + [str(a) for a in args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


class LoadTestAgainstServer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = support.test_model()
        cls.work = os.path.join(PATHS.work_dir, "loadtest")
        shutil.rmtree(cls.work, ignore_errors=True)
        os.makedirs(cls.work)
        cls.server = local_server.LocalServer(
            PATHS.server_binary, cls.model,
            ["--kv-memory-mb", "16", "--max-running", "16", "--drain-timeout", "5s"],
            log_path=os.path.join(cls.work, "server.log"), start_timeout=60, stop_timeout=20)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, f"zigzag-server exited with {code}; log {cls.server.log_path}"

    def counters(self):
        samples = local_server.parse_metrics(local_server.scrape(self.server.metrics_url))
        return {name: local_server.metric_sum(samples, name) for name in COUNTERS}

    def run_and_compare(self, name, extra):
        out = os.path.join(self.work, name)
        before = self.counters()
        result = loadtest("run", "--target", self.server.target, "--out-dir", out,
                          "--prompt-len", "uniform:16,160", "--long-prompt-len", "fixed:600",
                          "--long-fraction", "0.1", "--output-len", "uniform:1,12",
                          "--kv-policy", "full,zigzag,snapkv", "--kv-ratio", "0.3",
                          "--request-timeout", "60", "--sample-interval", "0.1",
                          "--slo-ttft-ms", "5000", "--slo-tpot-ms", "1000", *extra)
        after = self.counters()
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        delta = {k: after[k] - before[k] for k in COUNTERS}
        self.assertGreater(summary["requests"]["ok"], 0, result.stdout)
        self.assertEqual(summary["requests"]["failed"], 0, summary["requests"])
        self.assertEqual(summary["requests"]["ok"], delta["zigzag_request_success_total"])
        self.assertEqual(summary["tokens"]["prompt"], delta["zigzag_prompt_tokens_total"])
        self.assertEqual(summary["tokens"]["generated"], delta["zigzag_generation_tokens_total"])
        self.assertEqual(summary["kv"]["saved_bytes_total"], delta["zigzag_kv_bytes_saved_total"])
        self.assertEqual(delta["zigzag_request_failure_total"], 0)
        self.assertEqual(summary["tokens"]["stream_mismatches"], 0)
        self.assertGreater(summary["kv"]["saved_bytes_total"], 0, "zigzag/snapkv saved nothing")
        # The per-request CSV adds up to the summary.
        with open(os.path.join(out, "requests.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), summary["requests"]["sent"])
        ok = [r for r in rows if r["status"] == "OK"]
        self.assertEqual(sum(int(r["output_tokens"]) for r in ok), summary["tokens"]["generated"])
        self.assertEqual({r["policy"] for r in rows} >= {"full", "zigzag"}, True)
        for r in ok:
            self.assertLessEqual(int(r["output_tokens"]), int(r["max_tokens"]))
            self.assertLessEqual(float(r["ttft_s"]), float(r["e2e_s"]))
        for stat in ("ttft", "tpot", "e2e"):
            s = summary["latency_s"][stat]
            self.assertLessEqual(s["p50"], s["p90"])
            self.assertLessEqual(s["p90"], s["p99"])
        self.assertGreater(summary["throughput"]["output_tokens_per_s"], 0)
        self.assertGreater(summary["server_load"]["samples"], 0)
        if name == "closed":
            # Four streams always in flight: the 0.1 s samples see them. (Open-loop arrivals at
            # 25/s are served in milliseconds on the CPU backend, so its samples may all see 0.)
            self.assertGreaterEqual(summary["server_load"]["max_running"], 1)
        for png in ("latency.png", "timeline.png"):
            path = os.path.join(out, png)
            self.assertTrue(os.path.getsize(path) > 1000, path)
            with open(path, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        return summary

    def test_closed_loop_counts_match_server_counters(self):
        start = time.monotonic()
        summary = self.run_and_compare("closed", ["--concurrency", "4", "--duration", "3",
                                                  "--num-requests", "400"])
        self.assertLess(time.monotonic() - start, 60)
        self.assertEqual(summary["load"]["mode"], "concurrency")

    def test_poisson_counts_match_server_counters(self):
        summary = self.run_and_compare("poisson", ["--request-rate", "25", "--duration", "3",
                                                   "--num-requests", "40"])
        self.assertEqual(summary["load"]["mode"], "poisson")
        self.assertLessEqual(summary["requests"]["sent"], 40)

    def test_health_check_script(self):
        script = repo("deploy", "docker", "grpc_health_check.py")

        def probe(target, service):
            # -I -S: no site packages, as python3-minimal in the image.
            return subprocess.run([PYTHON, "-I", "-S", script, target, service, "3"],
                                  capture_output=True, text=True, timeout=20)
        self.assertEqual(probe(self.server.target, "").returncode, 0)
        result = probe(self.server.target, "zigzag.v1.Engine")
        self.assertEqual(result.returncode, 0, result.stderr)
        result = probe(self.server.target, "no.such.Service")
        self.assertEqual(result.returncode, 1)
        self.assertIn("unknown service", result.stderr)

    def test_text_prompts_when_the_server_has_a_tokenizer(self):
        out = os.path.join(self.work, "text")
        result = loadtest("run", "--target", self.server.target, "--out-dir", out,
                          "--prompt-mode", "text", "--prompt-len", "uniform:16,64",
                          "--output-len", "fixed:4", "--concurrency", "2", "--num-requests", "4",
                          "--duration", "10", "--no-plots", "--request-timeout", "30")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        # The embedded model ships its tokenizer; a random checkpoint has none and text is refused.
        has_tokenizer = os.path.exists(os.path.join(support.test_model(), "tokenizer.model"))
        if has_tokenizer:
            self.assertEqual(summary["requests"]["ok"], 4)
        else:
            self.assertEqual(list(summary["requests"]["by_status"]), ["FAILED_PRECONDITION"])


class LoadTestTool(unittest.TestCase):
    def test_refuses_non_loopback_targets(self):
        for target in ("10.1.2.3:50051", "example.com:50051", "0.0.0.0:50051"):
            result = loadtest("run", "--target", target, "--duration", "1", timeout=30)
            self.assertNotEqual(result.returncode, 0)
            self.assertIn("only loopback", result.stderr)

    def test_rejects_bad_distributions(self):
        result = loadtest("run", "--prompt-len", "weird:3", timeout=30)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("fixed:N", result.stderr)

    def test_sweep_writes_report(self):
        out = os.path.join(PATHS.work_dir, "sweep")
        shutil.rmtree(out, ignore_errors=True)
        result = loadtest("sweep", "--server-binary", PATHS.server_binary,
                          "--model", support.test_model(),
                          "--server-flags=--kv-memory-mb 4 --max-running 32",
                          "--configs", "full,zigzag:0.2,zigzag:0.2:adaptive", "--concurrency", "6",
                          "--duration", "1.5", "--prompt-len", "uniform:200,400",
                          "--output-len", "fixed:8", "--request-timeout", "30", "--grace", "20",
                          "--out-dir", out, timeout=110)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        with open(os.path.join(out, "report.md")) as f:
            report = f.read()
        self.assertIn("| full-c6 |", report)
        self.assertIn("| zigzag-0.2-c6 |", report)
        with open(os.path.join(out, "sweep.json")) as f:
            sweep = json.load(f)
        by_name = {r["name"]: r["summary"] for r in sweep["results"]}
        for summary in by_name.values():
            delta = summary["server_metrics_delta"]
            self.assertEqual(summary["requests"]["ok"], delta["zigzag_request_success_total"])
            self.assertEqual(summary["tokens"]["generated"],
                             delta["zigzag_generation_tokens_total"])
        self.assertEqual(by_name["full-c6"]["kv"]["saved_bytes_total"], 0)
        self.assertGreater(by_name["zigzag-0.2-c6"]["kv"]["saved_bytes_total"], 0)
        # A config's head split reaches the server and comes back in every response's KvStats.
        self.assertIn("| zigzag-0.2-adaptive-c6 |", report)
        self.assertEqual(by_name["zigzag-0.2-c6"]["kv"]["head_budgets_used"], ["uniform"])
        self.assertEqual(by_name["zigzag-0.2-adaptive-c6"]["kv"]["head_budgets_used"], ["adaptive"])
        self.assertGreater(by_name["zigzag-0.2-adaptive-c6"]["kv"]["saved_bytes_total"], 0)
        self.assertTrue(os.path.exists(os.path.join(out, "sweep.png")))


if __name__ == "__main__":
    support.main()
