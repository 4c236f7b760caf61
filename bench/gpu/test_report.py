#!/usr/bin/env python3
"""Checks bench/gpu/report.py's verdicts on hand-made run results (no GPU needed): CUDA tests and
CPU-only tests judged apart, a crashed binary counted against the right group, tests left out of
a bundle run listed, memcheck and racecheck judged each on its own logs. Run by ctest
(bench_gpu_report) or directly: python3 bench/gpu/test_report.py
"""
import os
import subprocess
import sys
import tempfile
import unittest

REPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "report.py")


def testsuite_xml(cases):
    """GoogleTest XML; cases: [(suite, name, outcome)], outcome "pass", "fail" or a skip reason."""
    body = []
    for suite, name, outcome in cases:
        inner = ""
        if outcome == "fail":
            inner = '<failure message="expected 1, got 2"/>'
        elif outcome != "pass":
            inner = f'<skipped message="{outcome}"/>'
        body.append(f'<testcase name="{name}" status="run" result="completed" '
                    f'classname="{suite}">{inner}</testcase>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n<testsuite name="all">\n'
            + "\n".join(body) + "\n</testsuite>\n</testsuites>\n")


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        for sub in ("tests", "sanitizer"):
            os.makedirs(os.path.join(self.dir, sub))

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, relative, text):
        with open(os.path.join(self.dir, relative), "w") as f:
            f.write(text)

    def report(self):
        result = subprocess.run([sys.executable, REPORT, self.dir], capture_output=True,
                                text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def acceptance(self, text, criterion_start):
        """The verdict cell of the acceptance row whose criterion starts with the given text."""
        rows = [line for line in text.splitlines() if line.startswith("| " + criterion_start)]
        self.assertEqual(len(rows), 1, f"no single row '{criterion_start}' in:\n{text}")
        return rows[0].rstrip(" |").rsplit("|", 1)[1].strip()

    def test_a_failing_cpu_test_does_not_hide_a_passing_cuda_verdict(self):
        self.write("tests/backend_ops_test.xml", testsuite_xml([
            ("AllBackends/BackendOpsTest", "Matmul/cpu", "fail"),
            ("AllBackends/BackendOpsTest", "Matmul/cuda_fp32", "pass"),
            ("AllBackends/BackendOpsTest", "Matmul/cuda_bf16", "pass")]))
        self.write("tests/tokenizer_test.xml", testsuite_xml([("SentencePieceTest", "Encode",
                                                               "fail")]))
        text = self.report()
        self.assertEqual(self.acceptance(text, "CUDA tests"), "**PASS**")
        self.assertEqual(self.acceptance(text, "CPU-only tests"), "**FAIL**")
        self.assertIn("CUDA tests: 2 tests, 2 passed, 0 failed, 0 skipped", text)
        self.assertIn("CPU-only tests: 2 tests, 0 passed, 2 failed, 0 skipped", text)

    def test_a_failing_or_gpu_skipped_cuda_test_fails_only_the_cuda_verdict(self):
        self.write("tests/cuda_backend_test.xml", testsuite_xml([
            ("CudaGpuTest", "TensorsMayOutliveTheBackend", "no usable CUDA device: driver"),
            ("CudaBackendTest", "ErrorCodesMapOntoStatusCodes", "pass")]))
        self.write("tests/backend_attention_test.xml", testsuite_xml([
            ("AllBackends/BackendAttentionTest", "Ragged/cuda_bf16", "fail"),
            ("AllBackends/BackendAttentionTest", "Ragged/cpu", "pass")]))
        text = self.report()
        self.assertEqual(self.acceptance(text, "CUDA tests"), "**FAIL**")
        self.assertEqual(self.acceptance(text, "CPU-only tests"), "**PASS**")
        self.assertIn("- AllBackends/BackendAttentionTest.Ragged/cuda_bf16", text)
        self.assertIn("- CudaGpuTest.TensorsMayOutliveTheBackend: no usable CUDA device", text)

    def test_a_crashed_binary_without_xml_fails_its_group(self):
        self.write("tests/scheduler_test.xml", testsuite_xml([("SchedulerTest", "Admits",
                                                               "pass")]))
        self.write("tests/exit-status.tsv",
                   "scheduler_test\t0\nbackend_attention_test\t139\ntokenizer_test\tleft out\n")
        self.write("tests/filtered.txt", "tokenizer_test: * left out: the bundle has no "
                   "tokenizer reference data\n")
        text = self.report()
        self.assertEqual(self.acceptance(text, "CUDA tests"), "**FAIL**")
        self.assertEqual(self.acceptance(text, "CPU-only tests"), "**PASS**")
        self.assertIn("backend_attention_test: exit 139 and no result XML", text)
        self.assertIn("Left out of the bundle run", text)
        self.assertIn("- tokenizer_test: * left out: the bundle has no tokenizer reference", text)

    def test_memcheck_and_racecheck_are_judged_apart(self):
        self.write("sanitizer/memcheck-backend_ops_test.log",
                   "[  PASSED  ] 40 tests.\n========= ERROR SUMMARY: 0 errors\n")
        self.write("sanitizer/racecheck-backend_attention_test.log",
                   "[  PASSED  ] 12 tests.\n========= RACECHECK SUMMARY: 3 hazards displayed "
                   "(2 errors, 1 warning)\n")
        self.write("sanitizer/racecheck-cuda_backend_test.log",
                   "[  PASSED  ] 8 tests.\n========= RACECHECK SUMMARY: 0 hazards displayed "
                   "(0 errors, 0 warnings)\n")
        text = self.report()
        self.assertEqual(self.acceptance(text, "compute-sanitizer memcheck"), "**PASS**")
        self.assertEqual(self.acceptance(text, "compute-sanitizer racecheck"), "**FAIL**")
        self.assertIn("| backend_attention_test | 3 (2 errors, 1 warnings) | errors |", text)
        self.assertIn("| cuda_backend_test | 0 (0 errors, 0 warnings) | clean |", text)

    def test_a_binary_that_crashed_under_the_sanitizer_is_not_clean(self):
        self.write("sanitizer/memcheck-backend_attention_test.log",
                   "========= ERROR SUMMARY: 0 errors\nrun.sh: memcheck exit status 139\n")
        self.write("sanitizer/memcheck-cuda_backend_test.log",
                   "[  PASSED  ] 8 tests.\n========= ERROR SUMMARY: 0 errors\n"
                   "run.sh: memcheck exit status 0\n")
        text = self.report()
        self.assertEqual(self.acceptance(text, "compute-sanitizer memcheck"), "**FAIL**")
        self.assertIn("| backend_attention_test | 0 | exit status 139 (crashed or timed out "
                      "under memcheck) |", text)
        self.assertIn("| cuda_backend_test | 0 | clean |", text)

    def test_a_sanitizer_log_without_summary_is_not_clean(self):
        self.write("sanitizer/racecheck-backend_ops_test.log", "[ RUN      ] Matmul/cuda_bf16\n")
        text = self.report()
        self.assertEqual(self.acceptance(text, "compute-sanitizer racecheck"), "**FAIL**")
        self.assertEqual(self.acceptance(text, "compute-sanitizer memcheck"), "not measured")
        self.assertIn("no summary (timed out?)", text)

    def test_nothing_run_is_not_measured(self):
        text = self.report()
        for row in ("CUDA tests", "CPU-only tests", "compute-sanitizer memcheck",
                    "compute-sanitizer racecheck"):
            self.assertEqual(self.acceptance(text, row), "not measured", row)


if __name__ == "__main__":
    unittest.main()
