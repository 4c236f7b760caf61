"""Shared set-up of the deploy/ test suites: paths from the command line (ctest passes them, see
deploy/CMakeLists.txt), the server's --help flags, and a small checkpoint to serve."""

import argparse
import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "loadtest"))

PATHS = argparse.Namespace()


def main():
    """test_x.py --repo-root R --server-binary S --make-checkpoint M --work-dir W [-- unittest args]"""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo-root", default=os.path.abspath(os.path.join(HERE, "..", "..")))
    parser.add_argument("--server-binary", default="")
    parser.add_argument("--make-checkpoint", default="")
    parser.add_argument("--work-dir", default="")
    argv = sys.argv[1:]
    rest = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    parser.parse_args(argv, namespace=PATHS)
    root = PATHS.repo_root
    if not PATHS.server_binary:
        PATHS.server_binary = os.path.join(root, "build", "server", "zigzag-server")
    if not PATHS.make_checkpoint:
        PATHS.make_checkpoint = os.path.join(root, "build", "tools", "zigzag-make-checkpoint")
    if not PATHS.work_dir:
        PATHS.work_dir = os.path.join(root, "build", "deploy", "test-work")
    os.makedirs(PATHS.work_dir, exist_ok=True)
    unittest.main(argv=[sys.argv[0]] + rest)


def repo(*parts):
    return os.path.join(PATHS.repo_root, *parts)


_HELP = None


def server_help_flags():
    """{flag name with underscores: default text} from `zigzag-server --help`."""
    global _HELP
    if _HELP is None:
        result = subprocess.run([PATHS.server_binary, "--help"], capture_output=True, text=True,
                                timeout=30)
        text = result.stdout + result.stderr
        flags = {}
        # "    --port (gRPC port; 0 = any free port); default: 50051;" (may wrap lines): a flag's
        # entry runs to the next flag; its default is the last "default: X;" in it.
        starts = list(re.finditer(r"^ {4}--([a-z0-9_]+) \(", text, re.M))
        for i, match in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            defaults = re.findall(r"default: (.*?);", " ".join(text[match.end():end].split()))
            flags[match.group(1)] = defaults[-1].strip('"') if defaults else ""
        if "port" not in flags or "model" not in flags:
            raise AssertionError(f"cannot read the flags of {PATHS.server_binary} --help:\n"
                                 f"{text[:2000]}")
        _HELP = flags
    return _HELP


def flag_name(arg):
    """'--kv-ratio=0.2' -> 'kv_ratio'; None for a non-flag."""
    if not arg.startswith("--") or arg == "--":
        return None
    name = arg[2:].split("=", 1)[0].replace("-", "_")
    # Abseil's boolean negation: --nofoo.
    return name


def test_model():
    """The embedded model when models/zigzag-tiny exists, else a small random checkpoint."""
    embedded = repo("models", "zigzag-tiny")
    if os.path.exists(os.path.join(embedded, "config.json")):
        return embedded
    out = os.path.join(PATHS.work_dir, "tiny-checkpoint")
    if not os.path.exists(os.path.join(out, "config.json")):
        subprocess.run([PATHS.make_checkpoint, "--out", out, "--arch", "llama", "--vocab", "512",
                        "--hidden", "128", "--intermediate", "256", "--layers", "4", "--heads",
                        "8", "--kv-heads", "2", "--max-pos", "4096", "--dtype", "bf16",
                        "--seed", "1"], check=True, capture_output=True, timeout=60)
    return out
