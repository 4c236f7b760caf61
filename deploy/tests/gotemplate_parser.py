"""Lexing and parsing of the Go text/template subset the chart uses: `{{- -}}` trimming, comments,
if / else if / else, range, with, define, variables and pipelines, into a tree of Nodes.
Does not evaluate anything (gotemplate_eval.py) nor know Helm's functions or values.
"""

import json
import re

from gotemplate_values import TemplateError


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
