#!/usr/bin/python3
"""train.py's --stages parser (stages.py): what each stage string becomes, and the message each bad
one gets (SystemExit naming the stage and the rule), without torch.

  /usr/bin/python3 tools/train_model/test_stages.py -v
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stages import parse_stages  # noqa: E402


def stage(length, batch, steps, lr, far=0.0, drill=False, only=(), hay=0):
    return {"len": length, "batch": batch, "steps": steps, "lr": lr, "far": far, "drill": drill,
            "only": list(only), "hay": hay}


class ParseStagesTest(unittest.TestCase):
    def test_every_kind_of_stage(self):
        self.assertEqual(
            parse_stages("256:16:800:1.5e-3,4096:1:300:5e-4:0.3,drill:16:300:1e-3,"
                         "drill=vartrack1+vartrack:16:400:1e-3,drill@2048:2:200:5e-4,"
                         "drill=multikey@1024:4:150:7e-4,drill=vartrack-alike@4096:1:150:3e-4,"
                         "drill=multivalue-alike+multiquery-alike:16:100:3e-4"),
            [stage(256, 16, 800, 1.5e-3), stage(4096, 1, 300, 5e-4, far=0.3),
             stage(0, 16, 300, 1e-3, drill=True),
             stage(0, 16, 400, 1e-3, drill=True, only=["vartrack1", "vartrack"]),
             stage(0, 2, 200, 5e-4, drill=True, hay=2048),
             stage(0, 4, 150, 7e-4, drill=True, only=["multikey"], hay=1024),
             stage(0, 1, 150, 3e-4, drill=True, only=["vartrack-alike"], hay=4096),
             stage(0, 16, 100, 3e-4, drill=True, only=["multivalue-alike", "multiquery-alike"])])

    def test_bounds_are_inclusive(self):
        self.assertEqual(parse_stages("36:1:1:1:1,4096:4096:1:1e-9:0"),
                         [stage(36, 1, 1, 1.0, far=1.0), stage(4096, 4096, 1, 1e-9)])
        self.assertEqual(parse_stages("drill@4096:1:1:1e-3")[0]["hay"], 4096)

    def test_bad_stages_name_the_stage_and_the_rule(self):
        cases = {
            "256:16:800": "'256:16:800' is not LEN:BATCH:STEPS:LR[:FAR]",
            "256:16:800:1e-3:0.3:9": "is not LEN:BATCH:STEPS:LR[:FAR]",
            "abc:16:800:1e-3": "(LEN a number or 'drill')",
            "256:16:lots:1e-3": "(LEN a number or 'drill')",
            "35:16:800:1e-3": "'35:16:800:1e-3': LEN in [36, 4096] or 'drill'",
            "4097:1:800:1e-3": "LEN in [36, 4096]",
            "256:0:800:1e-3": "BATCH in [1, 4096]",
            "256:4097:800:1e-3": "BATCH in [1, 4096]",
            "256:16:0:1e-3": "STEPS >= 1",
            "256:16:800:0": "'256:16:800:0': LR in (0, 1], FAR in [0, 1]",
            "256:16:800:-1e-3": "LR in (0, 1]",
            "256:16:800:2": "LR in (0, 1]",
            "256:16:800:nan": "LR in (0, 1]",
            "256:16:800:inf": "LR in (0, 1]",
            "4096:1:300:5e-4:1.5": "FAR in [0, 1]",
            "4096:1:300:5e-4:nan": "FAR in [0, 1]",
            "drill@512:2:200:5e-4": "the haystack length after '@' must be in [1024, 4096]",
            "drill@8192:2:200:5e-4": "must be in [1024, 4096]",
            "drill@x:2:200:5e-4": "must be in [1024, 4096]",
            "drill=:16:300:1e-3": "drill tasks must be among",
            "drill=passkey:16:300:1e-3": "drill tasks must be among multikey, multivalue, vartrack",
            "drill=multikey+nope:16:300:1e-3": "drill tasks must be among",
        }
        for text, message in cases.items():
            with self.subTest(stage=text):
                with self.assertRaises(SystemExit) as raised:
                    parse_stages(text)
                self.assertIn(message, str(raised.exception))
                self.assertTrue(str(raised.exception).startswith("--stages: "), str(raised.exception))

    def test_one_bad_stage_refuses_the_list(self):
        with self.assertRaisesRegex(SystemExit, "'256:16:0:1e-3'"):
            parse_stages("64:32:300:2e-3,256:16:0:1e-3,512:8:400:1e-3")


if __name__ == "__main__":
    unittest.main()
