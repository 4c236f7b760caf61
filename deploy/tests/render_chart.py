#!/usr/bin/env python3
"""Renders helm/zigzag-serve without helm (Debian has no helm package; CI has no network).

A small interpreter for the part of Go's text/template and Helm's functions the chart uses:
actions with `{{-`/`-}}` trimming and comments; if / else if / else, range (lists and maps,
with `$k, $v :=`), with, define / include, variables (`$x := ...`, `$`); pipelines with
parentheses; string (both quotings), number, bool literals; and the functions listed in FUNCS.
Anything else is an error, so a template that strays from the subset fails CI instead of
rendering wrongly. Values behave as in Helm: numbers print as Go prints float64 (1e+06 for a
million), a missing value prints as nothing, toYaml sorts keys.

  render_chart.py helm/zigzag-serve [--set a.b=v ...] [-f values.yaml] [--release NAME]
      [--namespace NS] [--show-notes]          # prints the manifests as one YAML stream
  render_chart.py helm/zigzag-serve --write-manifests deploy/kubernetes   # the plain manifests

Also imported by deploy/tests/test_deploy_config.py.
"""

import argparse
import copy
import decimal
import json
import os
import re
import sys

import yaml


class TemplateError(Exception):
    pass


# Values ----------------------------------------------------------------------------------------

def go_float(value):
    """fmt's %v of a float64: shortest digits, exponent form below 1e-4 or from 1e+06 (as Go)."""
    if value != value or value in (float("inf"), float("-inf")):
        return {True: "NaN"}.get(value != value, "+Inf" if value > 0 else "-Inf")
    if value == 0:
        return "0"
    d = decimal.Decimal(repr(float(value))).normalize()
    sign, digits, exponent = d.as_tuple()
    exp10 = exponent + len(digits) - 1
    text = "".join(str(x) for x in digits)
    if -4 <= exp10 < 6:
        return format(d, "f")
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"


def to_text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_float(float(value))
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{to_text(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(to_text(v) for v in value) + "]"
    return str(value)


def truthy(value):
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, (str, list, dict, tuple)):
        return len(value) > 0
    return True


def to_yaml(value):
    if value is None:
        return "null"
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=True, width=1 << 16)
    if text.endswith("\n...\n"):
        text = text[:-5]
    return text.rstrip("\n")


def go_quote(value):
    return json.dumps(to_text(value), ensure_ascii=False)


def go_printf(fmt, *args):
    out, i, n = [], 0, 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            verb = fmt[i + 1]
            i += 2
            if verb == "%":
                out.append("%")
                continue
            if n >= len(args):
                out.append(f"%!{verb}(MISSING)")
                continue
            arg = args[n]
            n += 1
            if verb in "sv":
                out.append(to_text(arg))
            elif verb == "d":
                out.append(str(int(arg)))
            elif verb == "q":
                out.append(go_quote(arg))
            else:
                raise TemplateError(f"printf verb %{verb} is not supported")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def go_eq(a, *rest):
    def norm(x):
        return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x
    return any(norm(a) == norm(b) for b in rest)


def dig(value, name):
    if isinstance(value, dict):
        return value.get(name)
    if value is None:
        return None
    raise TemplateError(f"cannot read field {name} of {type(value).__name__}")


# Lexing and parsing ----------------------------------------------------------------------------

ACTION_RE = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.X)


def tokenize(expr):
    tokens, pos = [], 0
    while pos < len(expr):
        m = TOKEN_RE.match(expr, pos)
        if not m:
            raise TemplateError(f"cannot parse '{expr[pos:]}' in '{expr}'")
        pos = m.end()
        kind = m.lastgroup
        if kind != "space":
            tokens.append((kind, m.group()))
    return tokens


def parse_pipeline(tokens, pos=0, stop=()):
    """Returns (pipeline, pos): a pipeline is a list of commands, a command a list of operands."""
    commands, command = [], []
    while pos < len(tokens):
        kind, text = tokens[pos]
        if kind in stop:
            break
        if kind == "pipe":
            if not command:
                raise TemplateError("empty command in pipeline")
            commands.append(command)
            command = []
            pos += 1
        elif kind == "lparen":
            sub, pos = parse_pipeline(tokens, pos + 1, stop=("rparen",))
            if pos >= len(tokens):
                raise TemplateError("missing )")
            command.append(("pipeline", sub))
            pos += 1
        elif kind == "string":
            command.append(("literal", json.loads(text)))
            pos += 1
        elif kind == "raw":
            command.append(("literal", text[1:-1]))
            pos += 1
        elif kind == "number":
            command.append(("literal", float(text) if any(c in text for c in ".eE")
                            else int(text)))
            pos += 1
        elif kind in ("field", "var", "ident"):
            if kind == "ident" and text in ("true", "false"):
                command.append(("literal", text == "true"))
            elif kind == "ident" and text == "nil":
                command.append(("literal", None))
            else:
                command.append((kind, text))
            pos += 1
        else:
            raise TemplateError(f"unexpected '{text}'")
    if command:
        commands.append(command)
    if not commands:
        raise TemplateError("empty pipeline")
    return commands, pos


class Node:
    def __init__(self, kind, **kw):
        self.kind = kind
        self.__dict__.update(kw)


def parse_template(source, name):
    """Returns (nodes, defines)."""
    pieces = []
    pos = 0
    for m in ACTION_RE.finditer(source):
        pieces.append(("text", source[pos:m.start()]))
        pieces.append(("action", m.group(2).strip(), bool(m.group(1)), bool(m.group(3))))
        pos = m.end()
    pieces.append(("text", source[pos:]))
    # Trimming: {{- eats the whitespace before, -}} the whitespace after.
    for i, piece in enumerate(pieces):
        if piece[0] != "action":
            continue
        if piece[2] and i > 0:
            pieces[i - 1] = ("text", pieces[i - 1][1].rstrip(" \t\r\n"))
        if piece[3] and i + 1 < len(pieces):
            pieces[i + 1] = ("text", pieces[i + 1][1].lstrip(" \t\r\n"))
    defines = {}
    root = []
    stack = [(root, None)]  # (children list, open node)

    def current():
        return stack[-1][0]

    for piece in pieces:
        if piece[0] == "text":
            if piece[1]:
                current().append(Node("text", text=piece[1]))
            continue
        action = piece[1]
        if action.startswith("/*"):
            if not action.endswith("*/"):
                raise TemplateError(f"{name}: unterminated comment")
            continue
        word = action.split(None, 1)[0] if action else ""
        rest = action[len(word):].strip()
        if word in ("if", "with"):
            node = Node(word, cond=parse_pipeline(tokenize(rest))[0], body=[], orelse=[])
            current().append(node)
            stack.append((node.body, node))
        elif word == "range":
            tokens = tokenize(rest)
            names = []
            if any(k == "declare" for k, _ in tokens):
                i = [k for k, _ in tokens].index("declare")
                names = [t for k, t in tokens[:i] if k == "var"]
                tokens = tokens[i + 1:]
            node = Node("range", names=names, cond=parse_pipeline(tokens)[0], body=[], orelse=[])
            current().append(node)
            stack.append((node.body, node))
        elif word == "else":
            _, node = stack.pop()
            if node is None or node.kind not in ("if", "with", "range"):
                raise TemplateError(f"{name}: else without if")
            if rest.startswith("if "):
                inner = Node("if", cond=parse_pipeline(tokenize(rest[3:]))[0], body=[],
                             orelse=[])
                inner.chained = True
                node.orelse.append(inner)
                stack.append((inner.body, inner))
            else:
                stack.append((node.orelse, node))
        elif word == "end":
            # An `else if` replaced its `if` on the stack, so one pop closes the whole chain.
            _, node = stack.pop()
            if node is None:
                raise TemplateError(f"{name}: end without a block")
        elif word == "define":
            define_name = json.loads(rest)
            node = Node("define", body=[])
            defines[define_name] = node
            stack.append((node.body, node))
        elif word in ("template", "block", "break", "continue"):
            raise TemplateError(f"{name}: '{word}' is not supported by render_chart.py")
        else:
            tokens = tokenize(action)
            if len(tokens) >= 2 and tokens[0][0] == "var" and tokens[1][0] in ("declare",
                                                                                "assign"):
                current().append(Node("set", var=tokens[0][1],
                                      pipe=parse_pipeline(tokens[2:])[0]))
            else:
                current().append(Node("output", pipe=parse_pipeline(tokens)[0]))
    if len(stack) != 1:
        raise TemplateError(f"{name}: unclosed block")
    return root, defines


# Evaluation ------------------------------------------------------------------------------------

class Renderer:
    def __init__(self, chart_dir, values, release="zigzag-serve", namespace="default",
                 service="Helm"):
        with open(os.path.join(chart_dir, "Chart.yaml")) as f:
            chart = yaml.safe_load(f)
        self.chart_dir = chart_dir
        self.defines = {}
        self.templates = {}
        tdir = os.path.join(chart_dir, "templates")
        for fname in sorted(os.listdir(tdir)):
            with open(os.path.join(tdir, fname)) as f:
                nodes, defines = parse_template(f.read(), fname)
            self.defines.update(defines)
            if not fname.startswith("_"):
                self.templates[fname] = nodes
        self.root = {
            "Values": values,
            "Release": {"Name": release, "Namespace": namespace, "Service": service,
                        "IsInstall": True, "IsUpgrade": False, "Revision": 1},
            "Chart": {"Name": chart["name"], "Version": chart["version"],
                      "AppVersion": chart.get("appVersion", "")},
            "Capabilities": {"KubeVersion": {"Version": "v1.29.0"}},
        }
        self.funcs = {
            "include": self.include,
            "toYaml": to_yaml,
            "nindent": lambda n, s: "\n" + self.indent(n, s),
            "indent": lambda n, s: self.indent(n, s),
            "quote": lambda *a: " ".join(go_quote(x) for x in a if x is not None),
            "squote": lambda *a: " ".join("'" + to_text(x) + "'" for x in a if x is not None),
            "default": lambda d, *v: v[0] if v and truthy(v[0]) else d,
            "empty": lambda v: not truthy(v),
            "printf": go_printf,
            "print": lambda *a: "".join(to_text(x) for x in a),
            "trunc": lambda n, s: s[:int(n)] if n >= 0 else s[int(n):],
            "trimSuffix": lambda suf, s: s[:-len(suf)] if suf and s.endswith(suf) else s,
            "trimPrefix": lambda pre, s: s[len(pre):] if pre and s.startswith(pre) else s,
            "replace": lambda old, new, s: s.replace(old, new),
            "contains": lambda sub, s: sub in s,
            "hasPrefix": lambda pre, s: s.startswith(pre),
            "lower": lambda s: s.lower(),
            "upper": lambda s: s.upper(),
            "toString": to_text,
            "int": lambda v: int(float(v)) if v not in (None, "") else 0,
            "eq": go_eq,
            "ne": lambda a, b: not go_eq(a, b),
            "not": lambda v: not truthy(v),
            "and": self.fn_and,
            "or": self.fn_or,
            "fail": self.fn_fail,
            "required": self.fn_required,
            "hasKey": lambda d, k: isinstance(d, dict) and k in d,
            "dict": lambda *kv: {kv[i]: kv[i + 1] for i in range(0, len(kv) - 1, 2)},
            "list": lambda *a: list(a),
        }

    @staticmethod
    def indent(n, s):
        pad = " " * int(n)
        return "\n".join(pad + line for line in to_text(s).split("\n"))

    @staticmethod
    def fn_and(*args):
        for a in args:
            if not truthy(a):
                return a
        return args[-1]

    @staticmethod
    def fn_or(*args):
        for a in args:
            if truthy(a):
                return a
        return args[-1]

    @staticmethod
    def fn_fail(message):
        raise TemplateError(f"fail: {message}")

    @staticmethod
    def fn_required(message, value):
        if not truthy(value) and value is not False:
            raise TemplateError(f"required: {message}")
        return value

    def include(self, name, data):
        if name not in self.defines:
            raise TemplateError(f"include of undefined template '{name}'")
        return self.render_nodes(self.defines[name].body, data, {"$": data})

    # A scope is a dict of variables; blocks get a copy so their variables stay inside.
    def operand(self, op, dot, scope):
        kind, value = op
        if kind == "literal":
            return value
        if kind == "pipeline":
            return self.pipeline(value, dot, scope)
        if kind == "field":
            result = dot
            for name in [p for p in value.split(".") if p]:
                result = dig(result, name)
            return result
        if kind == "var":
            head, *fields = value.split(".")
            if head not in scope:
                raise TemplateError(f"undefined variable {head}")
            result = scope[head]
            for name in fields:
                result = dig(result, name)
            return result
        raise TemplateError(f"{value} used as a value")

    def command(self, command, dot, scope, piped):
        head = command[0]
        if head[0] == "ident":
            if head[1] not in self.funcs:
                raise TemplateError(f"function '{head[1]}' is not supported by render_chart.py")
            args = [self.operand(op, dot, scope) for op in command[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            try:
                return self.funcs[head[1]](*args)
            except TemplateError:
                raise
            except Exception as error:  # wrong argument types or counts
                raise TemplateError(f"{head[1]}{tuple(args)}: {error}")
        if len(command) > 1 or piped is not _NOTHING:
            raise TemplateError(f"cannot call {head[1]} with arguments")
        return self.operand(head, dot, scope)

    def pipeline(self, pipe, dot, scope):
        value = _NOTHING
        for command in pipe:
            value = self.command(command, dot, scope, value)
        return value

    def render_nodes(self, nodes, dot, scope):
        out = []
        scope = dict(scope)
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "output":
                out.append(to_text(self.pipeline(node.pipe, dot, scope)))
            elif node.kind == "set":
                scope[node.var] = self.pipeline(node.pipe, dot, scope)
            elif node.kind == "if":
                value = self.pipeline(node.cond, dot, scope)
                out.append(self.render_nodes(node.body if truthy(value) else node.orelse, dot,
                                             scope))
            elif node.kind == "with":
                value = self.pipeline(node.cond, dot, scope)
                if truthy(value):
                    out.append(self.render_nodes(node.body, value, scope))
                else:
                    out.append(self.render_nodes(node.orelse, dot, scope))
            elif node.kind == "range":
                value = self.pipeline(node.cond, dot, scope)
                if not truthy(value):
                    out.append(self.render_nodes(node.orelse, dot, scope))
                    continue
                items = sorted(value.items()) if isinstance(value, dict) else list(
                    enumerate(value))
                for key, item in items:
                    inner = dict(scope)
                    if len(node.names) == 2:
                        inner[node.names[0]], inner[node.names[1]] = key, item
                    elif len(node.names) == 1:
                        inner[node.names[0]] = item
                    out.append(self.render_nodes(node.body, item, inner))
            elif node.kind == "define":
                pass
            else:
                raise TemplateError(f"unknown node {node.kind}")
        return "".join(out)

    def render(self, name):
        return self.render_nodes(self.templates[name], self.root, {"$": self.root})

    def render_all(self):
        """{template file: rendered text}, NOTES.txt included."""
        return {name: self.render(name) for name in self.templates}


_NOTHING = object()


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
