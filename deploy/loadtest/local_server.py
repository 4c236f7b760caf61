"""Starts and stops a zigzag-server on loopback for load tests and CI checks.

The server listens on 127.0.0.1 with `--port 0 --metrics-port 0` (any free port, so parallel
tests never collide); the ports are read back from its log lines
("gRPC: listening on 127.0.0.1:PORT", "metrics: http://127.0.0.1:PORT/metrics"). Every wait is
bounded, and the process is always stopped: SIGTERM (the server drains), then SIGKILL after a
grace period. Use it as a context manager:

    with LocalServer(binary, model, ["--kv-memory-mb", "8"], log_path="server.log") as server:
        print(server.target, server.metrics_url)
"""

import os
import re
import signal
import subprocess
import time
import urllib.request

LISTEN_RE = re.compile(r"gRPC: listening on 127\.0\.0\.1:(\d+)")
METRICS_RE = re.compile(r"metrics: http://127\.0\.0\.1:(\d+)/metrics")
READY_RE = re.compile(r"\] ready: ")

# Flags LocalServer sets itself; extra flags must not repeat them.
# (--log-level stays info: the ports and readiness are read from info lines.)
OWN_FLAGS = ("--host", "--port", "--metrics-host", "--metrics-port", "--model", "--log-level")


class ServerError(RuntimeError):
    pass


class LocalServer:
    def __init__(self, binary, model, flags=(), log_path=None, start_timeout=120.0,
                 stop_timeout=30.0):
        for flag in flags:
            name = flag.split("=", 1)[0].replace("_", "-")
            if name in OWN_FLAGS:
                raise ServerError(f"LocalServer sets {name} itself (loopback, free ports)")
        self.binary = binary
        self.model = model
        self.flags = list(flags)
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.process = None
        self.port = None
        self.metrics_port = None
        self._log = None

    @property
    def command(self):
        return [self.binary, "--model", self.model, "--host", "127.0.0.1", "--port", "0",
                "--metrics-host", "127.0.0.1", "--metrics-port", "0", "--log-level", "info"] + self.flags

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self):
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def _read_log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def start(self):
        if self.log_path is None:
            import tempfile
            fd, self.log_path = tempfile.mkstemp(prefix="zigzag-server-", suffix=".log")
            os.close(fd)
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout
        try:
            while True:
                text = self._read_log()
                grpc_port = LISTEN_RE.search(text)
                metrics_port = METRICS_RE.search(text)
                if grpc_port and metrics_port and READY_RE.search(text):
                    self.port = int(grpc_port.group(1))
                    self.metrics_port = int(metrics_port.group(1))
                    return self
                if self.process.poll() is not None:
                    raise ServerError(f"zigzag-server exited with {self.process.returncode} "
                                      f"before it was ready; log:\n{text[-4000:]}")
                if time.monotonic() > deadline:
                    raise ServerError(f"zigzag-server not ready after {self.start_timeout:.0f}s; "
                                      f"log:\n{text[-4000:]}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        """SIGTERM (drain), then SIGKILL after stop_timeout; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def scrape(metrics_url, timeout=5.0):
    """Returns the /metrics text."""
    if not metrics_url.startswith("http://127.0.0.1:"):
        raise ValueError(f"only loopback metrics URLs are scraped, not {metrics_url}")
    with urllib.request.urlopen(metrics_url, timeout=timeout) as response:
        return response.read().decode("utf-8", errors="replace")


SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format -> {(name, frozenset(labels)): value}."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE_RE.match(line)
        if not match:
            continue
        labels = frozenset(LABEL_RE.findall(match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def metric_sum(samples, name, **labels):
    """Sum of every sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))
