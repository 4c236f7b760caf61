"""Go/Helm value semantics for the chart renderer: TemplateError, how values print (float64 as
Go's %v, maps, nil), truthiness, toYaml, quote, printf, eq, and field lookup.
Owns no syntax and no evaluation of templates (gotemplate_parser.py, gotemplate_eval.py).
"""

import decimal
import json

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
