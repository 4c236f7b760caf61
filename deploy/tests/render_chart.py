#!/usr/bin/env python3
"""Renders helm/zigzag-serve without helm (Debian has no helm package; CI has no network).

The entry point: loads values.yaml with -f / --set overrides, renders every template, splits the
YAML stream, writes the plain manifests, and the command line. The template language lives in
gotemplate_values.py, gotemplate_parser.py and gotemplate_eval.py (re-exported here); anything
outside that subset is an error, so a template that strays from it fails CI instead of rendering
wrongly.

  render_chart.py helm/zigzag-serve [--set a.b=v ...] [-f values.yaml] [--release NAME]
      [--namespace NS] [--show-notes]          # prints the manifests as one YAML stream
  render_chart.py helm/zigzag-serve --write-manifests deploy/kubernetes   # the plain manifests

Also imported by deploy/tests/test_deploy_config.py.
"""

import argparse
import copy
import os
import re
import sys

import yaml

from gotemplate_eval import Renderer
from gotemplate_parser import ACTION_RE, TOKEN_RE, Node, parse_pipeline, parse_template, tokenize
from gotemplate_values import (TemplateError, dig, go_eq, go_float, go_printf, go_quote, to_text,
                               to_yaml, truthy)

# The names render_chart.py had before the template language moved out; the tests import them.
__all__ = [
    "TemplateError", "go_float", "to_text", "truthy", "to_yaml", "go_quote", "go_printf", "go_eq",
    "dig", "ACTION_RE", "TOKEN_RE", "tokenize", "parse_pipeline", "Node", "parse_template",
    "Renderer", "merge", "set_value", "load_values", "documents", "PLAIN_MANIFESTS",
    "PLAIN_RELEASE", "PLAIN_HEADER", "plain_manifests", "main",
]


def merge(base, override):
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def set_value(values, assignment):
    path, _, raw = assignment.partition("=")
    value = yaml.safe_load(raw) if raw else ""
    node = values
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def load_values(chart_dir, files=(), sets=()):
    with open(os.path.join(chart_dir, "values.yaml")) as f:
        values = yaml.safe_load(f) or {}
    for path in files:
        with open(path) as f:
            merge(values, yaml.safe_load(f) or {})
    for assignment in sets:
        set_value(values, assignment)
    return values


def documents(rendered):
    """[(template, text of one YAML document)] for non-empty manifests, NOTES.txt excluded."""
    docs = []
    for name, text in sorted(rendered.items()):
        if not name.endswith((".yaml", ".yml")):
            continue
        for doc in re.split(r"(?m)^---\s*$", text):
            if doc.strip() and yaml.safe_load(doc) is not None:
                docs.append((name, doc.strip("\n") + "\n"))
    return docs


# The plain manifests in deploy/kubernetes: the chart's defaults, and the optional parts rendered
# with them switched on. {file: (values overrides, templates)}.
PLAIN_MANIFESTS = {
    "zigzag-serve.yaml": ([], None),
    "optional/servicemonitor.yaml": (["serviceMonitor.enabled=true"], ["servicemonitor.yaml"]),
    "optional/hpa.yaml": (["autoscaling.enabled=true"], ["hpa.yaml"]),
    "optional/keda-scaledobject.yaml": (["keda.enabled=true"], ["keda-scaledobject.yaml"]),
    "optional/headless-service.yaml": (["service.headless.enabled=true"], ["service.yaml"]),
}
PLAIN_RELEASE = {"release": "zigzag-serve", "namespace": "zigzag", "service": "kubectl"}
PLAIN_HEADER = (
    "# Generated from helm/zigzag-serve (chart defaults{extra}) by\n"
    "#   python3 deploy/tests/render_chart.py helm/zigzag-serve --write-manifests deploy/kubernetes\n"
    "# Do not edit: change the chart and regenerate (CI checks they match).\n"
    "# Namespace {namespace}: kubectl create namespace {namespace}\n"
    "#   kubectl apply -f {file}\n")


def plain_manifests(chart_dir):
    """{relative file: text} of deploy/kubernetes."""
    out = {}
    for fname, (sets, only) in PLAIN_MANIFESTS.items():
        values = load_values(chart_dir, sets=sets)
        renderer = Renderer(chart_dir, values, **PLAIN_RELEASE)
        docs = documents(renderer.render_all())
        if only:
            docs = [(n, d) for n, d in docs if n in only]
            if fname == "optional/headless-service.yaml":
                docs = [(n, d) for n, d in docs if "clusterIP: None" in d]
        header = PLAIN_HEADER.format(extra=(", " + ", ".join(sets)) if sets else "",
                                     namespace=PLAIN_RELEASE["namespace"],
                                     file=f"deploy/kubernetes/{fname}")
        body = "---\n".join(f"# Source: zigzag-serve/templates/{n}\n{d}" for n, d in docs)
        out[fname] = header + "---\n" + body
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("chart")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--release", default="zigzag-serve")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--show-notes", action="store_true")
    parser.add_argument("--write-manifests", default="",
                        help="write the plain manifests (deploy/kubernetes) into this folder")
    args = parser.parse_args(argv)
    try:
        if args.write_manifests:
            for fname, text in plain_manifests(args.chart).items():
                path = os.path.join(args.write_manifests, fname)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)
                print("wrote", path)
            return 0
        values = load_values(args.chart, args.values, args.set)
        renderer = Renderer(args.chart, copy.deepcopy(values), args.release, args.namespace)
        rendered = renderer.render_all()
    except TemplateError as error:
        print(f"render_chart: {error}", file=sys.stderr)
        return 1
    print("---\n".join(f"# Source: {n}\n{d}" for n, d in documents(rendered)), end="")
    if args.show_notes and "NOTES.txt" in rendered:
        print("# NOTES.txt\n" + "\n".join("# " + line for line in
                                         rendered["NOTES.txt"].split("\n")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
