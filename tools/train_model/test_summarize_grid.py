#!/usr/bin/python3
"""summarize_grid.py on a hand-made grid folder: every count and percentage below is worked out by
hand from the rows written here (no torch, no zigzag-niah)."""
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import summarize_grid  # noqa: E402

HEADER = "task,policy,budget,kernel,length,depth,correct,total,accuracy\n"


def cells(rows):
    """rows: (policy, budget, length, correct) with 4 prompts per cell, one depth."""
    return HEADER + "".join(f"passkey,{p},{b},7,{n},0.5,{c},4,{c / 4:.4f}\n" for p, b, n, c in rows)


class SummarizeGridTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        d = self.tmp.name
        os.makedirs(os.path.join(d, "uniform-k7"))
        os.makedirs(os.path.join(d, "adaptive-k7"))
        with open(os.path.join(d, "uniform-k7", "cells.csv"), "w") as f:
            f.write(cells([("full", 1, 512, 4), ("full", 1, 1024, 2),
                           ("streaming", 0.05, 512, 0), ("streaming", 0.05, 1024, 0),
                           ("snapkv", 0.05, 512, 1), ("snapkv", 0.05, 1024, 1),
                           ("pyramidkv", 0.05, 512, 3), ("pyramidkv", 0.05, 1024, 1),
                           ("zigzag", 0.05, 512, 0), ("zigzag", 0.05, 1024, 0)]))
        with open(os.path.join(d, "adaptive-k7", "cells.csv"), "w") as f:
            f.write(cells([("snapkv", 0.05, 512, 2), ("snapkv", 0.05, 1024, 1),
                           ("pyramidkv", 0.05, 512, 3), ("pyramidkv", 0.05, 1024, 1),
                           ("zigzag", 0.05, 512, 0), ("zigzag", 0.05, 1024, 0)]))
        with open(os.path.join(d, "full-cache.json"), "w") as f:
            json.dump({"grid": {"passkey@512": [4, 4], "passkey@1024": [0, 4]}}, f)
        self.text = summarize_grid.summarize(d)

    def tearDown(self):
        self.tmp.cleanup()

    def test_full_cache_and_engine_against_pytorch(self):
        self.assertIn("| passkey | 4/4 | 0/4 | 50% |", self.text)  # 4 of 8
        # the engine's full run: 4/4 and 2/4; PyTorch's 4/4 and 0/4
        self.assertIn("Engine `full` against PyTorch: 1 of 2 cells equal: passkey at 1024: engine 2, "
                      "PyTorch 0.", self.text)

    def test_policy_table_pools_lengths(self):
        # full 6/8 = 75; streaming 0/8; snapkv 2/8 = 25; pyramidkv 4/8 = 50; zigzag 0/8
        self.assertIn("| passkey (75) | 0 | 25 | 50 | 0 |", self.text)

    def test_layer_splits_and_adaptive_heads_are_counted_by_sign(self):
        self.assertIn("| passkey | 1 / 0 / 0 | 0 / 1 / 0 |", self.text)  # pyramidkv 50 > 25, zigzag 0 < 25
        # adaptive - uniform: snapkv 37.5 - 25 = +12.5, pyramidkv 0, zigzag 0: mean 12.5 / 3
        self.assertIn("| passkey | 1 / 0 / 2, +4.2 |", self.text)
        self.assertNotIn("Mean share", self.text)  # no results.csv

    def test_layer_shares_from_results(self):
        with open(os.path.join(self.tmp.name, "uniform-k7", "results.csv"), "w") as f:
            f.write("task,length,prompt_tokens,depth,trial,policy,budget,kernel,correct,generated,answer,"
                    "retained_fraction,kept_per_layer\n"
                    'passkey,512,500,0.5,0,full,1,-,1,"1."," 1.",1,500;500\n'
                    'passkey,512,500,0.5,0,zigzag,0.05,7,0,"2."," 1.",0.04,30;10\n'
                    'passkey,512,500,0.5,1,zigzag,0.05,7,0,"2."," 1.",0.02,10;10\n')
        text = summarize_grid.summarize(self.tmp.name)
        self.assertIn("| zigzag | 5% | 62.5 | 37.5 |", text)  # (75 + 50) / 2, (25 + 50) / 2
        self.assertNotIn("| full |", text)

    def test_a_test_seed_is_pooled_with_the_grid_cell_by_cell(self):
        self.assertNotIn("seed", self.text)  # no full-cache-seed*.json: no pooled table
        with open(os.path.join(self.tmp.name, "full-cache-seed9.json"), "w") as f:
            json.dump({"grid": {"passkey@512": [15, 16], "passkey@1024": [16, 16]}}, f)
        text = summarize_grid.summarize(self.tmp.name)
        # 4/4 + 15/16 = 19/20 (95%: at the bar, not under it); 0/4 + 16/16 = 16/20; 35 of 40
        self.assertIn("## Full cache, the grid's prompts and seed 9's (PyTorch, greedy)", text)
        self.assertIn("| passkey | 19/20 | 16/20 | 87.5% |", text)
        self.assertIn("Cells under 95%: passkey at 1024 (16/20).", text)
        self.assertIn("| passkey | 4/4 | 0/4 | 50% |", text)  # the grid's own table is unchanged
        # a test without one of the task's cells: no pooled row for it, and none of its cells named
        with open(os.path.join(self.tmp.name, "full-cache-seed9.json"), "w") as f:
            json.dump({"grid": {"passkey@512": [10, 16]}}, f)  # 14/20 at 512, under the bar
        text = summarize_grid.summarize(self.tmp.name)
        self.assertNotIn("| passkey | 14/20 |", text)
        self.assertIn("Cells under 95%: none.", text)

    def test_a_folder_without_runs_is_an_error(self):
        with tempfile.TemporaryDirectory() as empty:
            with self.assertRaises(SystemExit) as cm:
                summarize_grid.summarize(empty)
            self.assertIn("no uniform-k*/ or adaptive-k*/cells.csv", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
