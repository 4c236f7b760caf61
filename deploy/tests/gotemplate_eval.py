"""Evaluation of parsed chart templates: Renderer loads a chart's templates and defines, and holds
Helm's functions (self.funcs: default, quote, toYaml, include, indent, nindent, ...) and scopes.
Does not parse (gotemplate_parser.py), load values or overrides, or split output (render_chart.py).
"""

import os

import yaml

from gotemplate_parser import parse_template
from gotemplate_values import (TemplateError, dig, go_eq, go_printf, go_quote, to_text, to_yaml,
                               truthy)


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
