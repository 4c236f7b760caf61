"""train.py's --stages parser, apart from train.py so that it can be tested without torch.

What it owns: the stage syntax (haystack, needles-only drill and haystack-drill stages) and the
bounds of each field. What it does not own: whether the drill tasks are in the --tasks mixture
(train.py checks that against the mixture).
"""
import tasks as tk


def parse_stages(s):
    """LEN:BATCH:STEPS:LR[:FAR],...; LEN "drill": a needles-only stage (tasks.drill_example) of the
    mixture's drill tasks, "drill=TASK+TASK...": of those tasks only (weights from the mixture;
    "vartrack1", vartrack's lookup alone, when vartrack is in the mixture, and "TASK-alike", TASK's
    drill with near-repeating names or values, when TASK is);
    "drill@N" / "drill=TASK...@N": the same needles and questions in haystack of N/2 to N tokens."""
    out = []
    for part in s.split(","):
        f = part.split(":")
        if len(f) not in (4, 5):
            raise SystemExit(f"--stages: '{part}' is not LEN:BATCH:STEPS:LR[:FAR]")
        only, hay = [], 0
        if f[0].startswith("drill") and "@" in f[0]:
            f[0], _, n = f[0].partition("@")
            try:
                hay = int(n)
            except ValueError:
                hay = -1
            # from 1024: half of it (the shortest drawn) holds any drill's needles and first question
            if not 1024 <= hay <= 4096:
                raise SystemExit(f"--stages: '{part}': the haystack length after '@' must be in [1024, 4096]")
        if f[0].startswith("drill="):
            only = f[0][len("drill="):].split("+")
            bad = [t for t in only if t not in tk.DRILL_TASKS]
            if bad:  # also "drill=" alone: split gives [""]
                raise SystemExit(f"--stages: '{part}': drill tasks must be among {', '.join(tk.DRILL_TASKS)}")
            f[0] = "drill"
        try:
            drill = f[0] == "drill"
            st = {"len": 0 if drill else int(f[0]), "batch": int(f[1]), "steps": int(f[2]), "lr": float(f[3]),
                  "far": float(f[4]) if len(f) > 4 else 0.0, "drill": drill, "only": only, "hay": hay}
        except ValueError:
            raise SystemExit(f"--stages: '{part}' is not LEN:BATCH:STEPS:LR[:FAR] (LEN a number or 'drill')")
        if not drill and not 36 <= st["len"] <= 4096 or not 1 <= st["batch"] <= 4096 or st["steps"] < 1:
            raise SystemExit(f"--stages: '{part}': LEN in [36, 4096] or 'drill', BATCH in [1, 4096], STEPS >= 1")
        if not 0 < st["lr"] <= 1 or not 0 <= st["far"] <= 1:  # also refuses nan and inf
            raise SystemExit(f"--stages: '{part}': LR in (0, 1], FAR in [0, 1]")
        out.append(st)
    return out
