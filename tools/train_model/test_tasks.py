#!/usr/bin/env python3
"""Tests of tasks.py (the long-context task generators and their checkers), without torch and without
sentencepiece: a stand-in tokenizer with SentencePiece's one property the generators rely on (the ids
of a space-joined text are the concatenation of each word's ids) and a seeded synthetic haystack.

- every task's generated answer equals the answer the checker recomputes from the prompt text, over
  many seeds, lengths and depths, and the ids are BOS + prompt + answer + EOS within the length;
- generation is deterministic by seed (and different seeds give different prompts);
- the passkey prompt is the shipped format, byte for byte (literal strings, not tasks.py's constants);
- the checkers on hand-written prompts (a variable chain, distractor keys) and the scoring rule;
- follow-up questions (training only) ask about other needles, and the checker, reading the text up
  to each, finds the answer they come with;
- drills (needles only, training) hold only needles and questions, each answered as the checker says.

  python3 tools/train_model/test_tasks.py -v        (ctest: train_model_tasks)
"""
import os
import random
import re
import sys
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import niah_data as nd  # noqa: E402
import tasks  # noqa: E402


class FakeSentencePiece:
    """Word-additive tokenizer: each space-separated word becomes ceil(len/3) pieces (every digit its
    own piece, as split_digits does); ids are crc32-based so that different words differ."""

    def bos_id(self):
        return 1

    def eos_id(self):
        return 2

    def _word(self, w):
        pieces, cur = [], ""
        for ch in w:
            if ch.isdigit():
                if cur:
                    pieces.append(cur)
                    cur = ""
                pieces.append(ch)
            else:
                cur += ch
                if len(cur) == 3:
                    pieces.append(cur)
                    cur = ""
        if cur:
            pieces.append(cur)
        return [3 + zlib.crc32(p.encode()) % 4000 for p in pieces]

    def encode(self, text):
        if isinstance(text, list):
            return [self.encode(t) for t in text]
        assert "  " not in text and not text.startswith(" "), repr(text[:40])
        return [i for w in text.split(" ") for i in self._word(w)]


def synthetic_words(n=6000, seed=5):
    rng = random.Random(seed)
    vocab = ["the", "a", "release", "notes", "fix", "commit", "branch", "merge", "Git", "VARIANT",
             "number", "magic", "special", "1.8.0", "(see", "above).", "HEAD", "is", "for", "value",
             "ABCDE", "passkey", "secret", "12345", "--option", "e.g.", "and", "of", "to", "it."]
    return [rng.choice(vocab) for _ in range(n)]


def make_maker(words=None):
    return nd.ExampleMaker(FakeSentencePiece(), words or synthetic_words())


# Drill texts: any task's needle sentence; where a question starts; a question and its answer.
NEEDLE = (r"The special magic number for [a-z]+ [a-z]+ is \d{5}\.|"
          r"The (?:first|second|third|fourth) special magic number for [a-z]+ [a-z]+ is \d{5}\.|"
          r"The value (?:\d{5}|of VAR [A-Z]{5}) is held by VAR [A-Z]{5}\.")
SPLIT = r" (?=What (?:is|are) |Which variables )"
QA = (r"(.*\? (?:The (?:first )?special magic number for [a-z]+ [a-z]+ is|The value \d+ is held by VAR)) "
      r"(.*)$")


class GeneratorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.maker = make_maker()
        cls.sp = cls.maker.sp

    def check_example(self, task, ex, total_len, depth):
        where = f"{task} len {total_len} depth {depth}"
        self.assertEqual(ex.task, task, where)
        self.assertLessEqual(len(ex.ids), total_len, where)
        self.assertEqual(ex.ids[:ex.n_prompt], [1] + self.sp.encode(ex.prompt), where)
        self.assertEqual(ex.ids, [1] + self.sp.encode(ex.prompt + ex.answer) + [2], where)
        self.assertTrue(ex.answer.startswith(" ") and ex.answer.endswith("."), where)
        # the independent checker, from the text alone
        self.assertEqual(tasks.expected_answer(task, ex.prompt), ex.answer, where)
        self.assertTrue(tasks.check(task, ex.prompt, ex.answer), where)
        self.assertTrue(tasks.check(task, ex.prompt, ex.answer + "</s> trailing"), where)
        self.assertFalse(tasks.check(task, ex.prompt, " 0" + ex.answer.lstrip()), where)

    def test_every_task_answer_equals_checker_over_seeds_lengths_depths(self):
        count = 0
        for task in tasks.TASKS:
            for total_len in (120, 160, 300, 1024, 4096):
                for depth in (0.0, 0.1, 0.5, 0.9, 1.0):
                    for seed in range(8 if total_len == 4096 else 16):
                        rng = random.Random(f"{seed}-{task}-{total_len}-{depth}")
                        ex = tasks.generate(task, self.maker, rng, total_len, depth)
                        self.check_example(task, ex, total_len, depth)
                        # the budget is used: within a few tokens of the length
                        self.assertGreaterEqual(len(ex.ids), total_len - 8, f"{task} {total_len}")
                        count += 1
        self.assertEqual(count, 5 * (4 * 5 * 16 + 5 * 8))

    def test_deterministic_by_seed(self):
        for task in tasks.TASKS:
            a = tasks.generate(task, self.maker, random.Random("s-1"), 700, 0.3)
            b = tasks.generate(task, self.maker, random.Random("s-1"), 700, 0.3)
            c = tasks.generate(task, self.maker, random.Random("s-2"), 700, 0.3)
            self.assertEqual((a.ids, a.n_prompt, a.prompt, a.answer), (b.ids, b.n_prompt, b.prompt, b.answer),
                             task)
            self.assertNotEqual(a.prompt, c.prompt, task)

    def test_depth_places_the_first_needed_needle(self):
        # depth 0: the prompt opens with the needle the answer needs; depth 1: after all haystack words
        first = {"passkey": "The secret passkey is ", "multikey": "The special magic number for ",
                 "multivalue": "The first special magic number for ", "vartrack": "The value ",
                 "multiquery": "The special magic number for "}
        for task in tasks.TASKS:
            ex = tasks.generate(task, self.maker, random.Random(3), 600, 0.0)
            self.assertTrue(ex.prompt.startswith(first[task]), (task, ex.prompt[:60]))
        ex = tasks.generate("multikey", self.maker, random.Random(4), 600, 1.0)
        ans = ex.answer.strip(" .")
        needle_at = ex.prompt.index(f" is {ans}.")
        # nothing but needles (no haystack word) between the target needle and the question
        tail = ex.prompt[needle_at:ex.prompt.index("What is the special")]
        self.assertEqual(tail.count("."), tail.count("The special magic number for ") + 1, tail)

    def test_multivalue_and_vartrack_shapes(self):
        ex = tasks.generate("multivalue", self.maker, random.Random(9), 1500, 0.2)
        values = re.findall(r"(?:^ | is )(\d+)", ex.answer)
        self.assertEqual(len(values), tasks.MV_VALUES)
        self.assertEqual(len(set(values)), tasks.MV_VALUES)
        positions = [ex.prompt.index(f" is {v}.") for v in values]
        self.assertEqual(positions, sorted(positions))
        ex = tasks.generate("vartrack", self.maker, random.Random(9), 1500, 0.2)
        names = re.findall(r"(?:^ |held by VAR )([A-Z]+)", ex.answer)
        self.assertEqual(len(names), tasks.VT_HOPS)
        self.assertEqual(len(set(names)), tasks.VT_HOPS)
        # the answer walks the chain: each hop is the link sentence of the prompt, word for word
        for a, b in zip(names, names[1:]):
            self.assertIn(f" The value of VAR {a} is held by VAR {b}.", ex.prompt)
            self.assertIn(f"The value of VAR {a} is held by VAR {b}", ex.answer)
        positions = [ex.prompt.index(f"held by VAR {n}.") for n in names]
        self.assertEqual(positions, sorted(positions))
        self.assertEqual(ex.prompt.count(" is held by VAR "), 2 * tasks.VT_HOPS)  # chain and decoy

    def test_passkey_is_the_shipped_format_byte_for_byte(self):
        words = ["alpha", "beta", "gamma", "delta"] * 50
        maker = make_maker(words)
        ex = tasks.generate("passkey", maker, random.Random(11), 60, 0.5)
        pk = ex.answer.strip(" .")
        self.assertRegex(pk, r"^[1-9]\d{4}$")
        before, after = ex.prompt.split(f" The secret passkey is {pk}. Remember it. ")
        self.assertTrue(after.endswith("What is the secret passkey? The secret passkey is"))
        self.assertEqual(ex.answer, f" {pk}.")
        # and the same draws as niah_data.ExampleMaker.make, which the shipped model trained on
        ids, n, pk2, text = maker.make(random.Random(11), 60, 0.5)
        self.assertEqual((ex.ids, ex.n_prompt, ex.prompt), (ids, n, text))

    def test_follow_up_questions_ask_other_needles_and_are_answered_by_the_checker(self):
        sp, count = self.maker.sp, 0
        for task in tasks.TASKS:
            for total_len in (400, 1024, 4096):
                for seed in range(6):
                    where = f"{task} {total_len} seed {seed}"
                    ex = tasks.generate(task, self.maker, random.Random(f"f{seed}"), total_len - 200, seed / 5)
                    ids, spans = tasks.append_follow_ups(task, ex, self.maker, random.Random(seed), 3, total_len)
                    self.assertEqual(ids[:len(ex.ids) - 1], ex.ids[:-1], where)
                    self.assertEqual(ids[-1], sp.eos_id(), where)
                    self.assertLessEqual(len(ids), total_len, where)
                    pairs = tasks.follow_up_questions(task, ex.prompt, random.Random(seed), 3)
                    self.assertEqual(len(spans), len(pairs), where)  # 200 tokens hold three of any task
                    needles = len(re.findall(r"The special magic number for [a-z ]+ is \d+\.", ex.prompt))
                    want = {"passkey": 0, "multivalue": 0, "multikey": min(3, needles - 1),
                            "multiquery": min(3, (needles - 2) // 2),
                            "vartrack": 1 if len(re.findall(r"The value \d+ is held", ex.prompt)) > 1 else 0}
                    self.assertEqual(len(pairs), want[task], where)
                    text = ex.prompt + ex.answer
                    asked = [re.split(r"[?.] ", ex.prompt)[-1]]  # the question's last sentence
                    for (q, a), (start, end) in zip(pairs, spans):
                        # the checker, reading only the text so far, finds the same answer
                        self.assertEqual(tasks.expected_answer(task, text + " " + q), a, where)
                        self.assertEqual(ids[start:end], sp.encode(a.lstrip(" ")), where)
                        tail = re.split(r"[?.] ", q)[-1]
                        self.assertNotIn(tail, asked, where)  # never the same key (or value) twice
                        asked.append(tail)
                        text += " " + q + a
                        count += 1
                    if task == "vartrack" and pairs:
                        # the decoy chain: every variable the first answer does not name
                        first = re.findall(r"(?:^ |held by VAR )([A-Z]+)", ex.answer)
                        names = re.findall(r"(?:^ |held by VAR )([A-Z]+)", pairs[0][1])
                        self.assertFalse(set(first) & set(names), where)
                        self.assertEqual(len(first) + len(names), ex.prompt.count(" is held by VAR "), where)
        self.assertGreater(count, 60)

    def test_drills_are_needles_then_questions_the_checker_answers(self):
        sp, count = self.maker.sp, 0
        alike = {"vartrack": [0, 0], "vartrack-alike": [0, 0]}  # [names sharing a first letter, names]
        near = {t: [0, 0] for t in tasks.DRILL_TASKS if t.startswith("multi")}  # [near-copy values, values]
        for task in tasks.DRILL_TASKS:
            for seed in range(20):
                where = f"drill {task} seed {seed}"
                ids, n_prompt, score_len, spans, text = tasks.drill_example(task, sp, random.Random(seed))
                self.assertEqual(tasks.drill_example(task, sp, random.Random(seed))[0], ids, where)
                self.assertEqual(ids, [sp.bos_id()] + sp.encode(text) + [sp.eos_id()], where)
                # needles, then " question answer" pairs (no haystack word anywhere)
                parts = re.split(SPLIT, text)
                needles, qas = parts[0], parts[1:]
                self.assertEqual(len(qas), 1 + len(spans), where)
                self.assertNotIn("?", needles, where)
                self.assertRegex(needles, r"^((" + NEEDLE + r")( |$))+$")
                answers = [(n_prompt, n_prompt + score_len)] + spans
                asked = set()
                for qa, (start, end) in zip(qas, answers):
                    q, a = re.match(QA, qa).groups()
                    # the checker, reading the needles and this question alone, gives the same answer
                    self.assertEqual(tasks.expected_answer(tasks.drill_base(task), needles + " " + q), " " + a, where)
                    self.assertEqual(ids[start:end], sp.encode(a), where)
                    self.assertNotIn(q, asked, where)
                    asked.add(q)
                    count += 1
                n_needles = len(re.findall(r"\d{5}\.|VAR [A-Z]{5}\.", needles))
                if task == "multikey":
                    self.assertTrue(6 <= n_needles <= 12 and len(qas) == 6, where)
                if task == "multivalue":  # every key asked once
                    self.assertEqual(len(qas), len(set(re.findall(r"number for ([a-z]+ [a-z]+)", needles))), where)
                if task == "vartrack1":  # one-variable chains, six asked
                    self.assertTrue(6 <= n_needles <= 12 and len(qas) == 6, where)
                    self.assertNotIn("The value of VAR", needles, where)
                if task in near:  # values sharing three or more digit positions with another value
                    values = re.findall(r"is (\d{5})\.", needles)
                    self.assertEqual(len(values), len(set(values)), where)
                    near[task][0] += sum(any(sum(x == y for x, y in zip(v, w)) >= 3 for w in values if w != v)
                                         for v in values)
                    near[task][1] += len(values)
                if task in ("vartrack", "vartrack-alike"):  # every chain asked once
                    self.assertEqual(len(qas), len(re.findall(r"The value \d{5} is held", needles)), where)
                    names = re.findall(r"held by VAR ([A-Z]{5})\.", needles)
                    self.assertEqual(len(names), len(set(names)), where)
                    firsts = [n[0] for n in names]
                    alike[task][0] += sum(firsts.count(f) > 1 for f in firsts)
                    alike[task][1] += len(names)
        self.assertGreater(count, 300)
        # a random name shares its first letter with one of n - 1 others with probability
        # 1 - (25/26)^(n-1), 0.11-0.35 for these drills' 4-12 names; vartrack-alike's mostly do
        self.assertLess(alike["vartrack"][0], 0.4 * alike["vartrack"][1], alike)
        self.assertGreater(alike["vartrack-alike"][0], 0.6 * alike["vartrack-alike"][1], alike)
        # two random five-digit numbers agree in three or more positions with probability 0.0086, so
        # under 0.1 of 6-12 random values have such a neighbour; the -alike drills' mostly do
        for task, (hits, total) in near.items():
            if task.endswith("-alike"):
                self.assertGreater(hits, 0.5 * total, near)
            else:
                self.assertLess(hits, 0.15 * total, near)
        with self.assertRaisesRegex(ValueError, "no drill for task 'passkey'"):
            tasks.drill_example("passkey", sp, random.Random(1))

    def test_haystack_drills_hold_the_same_needles_and_questions_in_haystack(self):
        sp, count = self.maker.sp, 0
        needle, split = NEEDLE, SPLIT
        for task in tasks.DRILL_TASKS:
            for seed in range(6):
                for total in (512, 2048):
                    where = f"haystack drill {task} seed {seed} length {total}"
                    plain = re.split(split, tasks.drill_example(task, sp, random.Random(seed))[4])
                    ids, n_prompt, score_len, spans, text = tasks.drill_example(
                        task, sp, random.Random(seed), maker=self.maker, total_len=total)
                    self.assertEqual(tasks.drill_example(task, sp, random.Random(seed), maker=self.maker,
                                                         total_len=total)[0], ids, where)
                    self.assertEqual(ids, [sp.bos_id()] + sp.encode(text) + [sp.eos_id()], where)
                    self.assertTrue(total * 3 // 4 <= len(ids) <= total, (where, len(ids)))
                    parts = re.split(split, text)
                    hay, qas = parts[0], parts[1:]
                    # the needles-only drill's sentences in the same order, with haystack words between
                    self.assertEqual(re.findall(needle, hay), re.findall(needle, plain[0]), where)
                    self.assertGreater(len(hay), len(plain[0]) * (1 if total == 512 else 2), where)  # words between
                    self.assertEqual(qas, plain[1:1 + len(qas)], where)  # its questions, while they fit
                    if total == 2048:
                        self.assertEqual(len(qas), len(plain) - 1, where)
                    self.assertEqual(len(qas), 1 + len(spans), where)
                    for qa, (start, end) in zip(qas, [(n_prompt, n_prompt + score_len)] + spans):
                        q, a = re.match(QA, qa).groups()
                        self.assertEqual(tasks.expected_answer(tasks.drill_base(task), hay + " " + q), " " + a, where)
                        self.assertEqual(ids[start:end], sp.encode(a), where)
                        count += 1
        self.assertGreater(count, 150)

    def test_too_short_or_bad_arguments_are_errors(self):
        with self.assertRaisesRegex(ValueError, "unknown task 'nope'"):
            tasks.generate("nope", self.maker, random.Random(1), 500, 0.5)
        with self.assertRaisesRegex(ValueError, "depth 1.5 is outside"):
            tasks.generate("multikey", self.maker, random.Random(1), 500, 1.5)
        with self.assertRaisesRegex(ValueError, "length 20 does not hold"):
            tasks.generate("vartrack", self.maker, random.Random(1), 20, 0.5)
        with self.assertRaisesRegex(ValueError, "length 5 does not hold"):
            tasks.generate("passkey", self.maker, random.Random(1), 5, 0.5)
        self.assertEqual(tasks.parse_mixture("passkey:2,vartrack"), [("passkey", 2.0), ("vartrack", 1.0)])
        with self.assertRaisesRegex(ValueError, "unknown task 'ruler'"):
            tasks.parse_mixture("passkey,ruler:1")
        with self.assertRaisesRegex(ValueError, "weight of 'passkey' must be > 0"):
            tasks.parse_mixture("passkey:0")


class EvalFileTest(unittest.TestCase):
    """make_eval_tasks.records: the JSONL lines zigzag-niah --tasks_file reads."""

    def test_records_hold_prompt_ids_answer_and_token_counts(self):
        import json
        import make_eval_tasks as me
        maker = make_maker()
        recs = list(me.records(maker, ["passkey", "vartrack"], [300, 700], [0.0, 1.0], 2, 77, True))
        self.assertEqual(len(recs), 2 * 2 * 2 * 2)
        self.assertEqual([(r["task"], r["length"], r["depth"], r["trial"]) for r in recs[:3]],
                         [("passkey", 300, 0.0, 0), ("passkey", 300, 0.0, 1), ("passkey", 300, 1.0, 0)])
        for r in recs:
            self.assertEqual(r["prompt_ids"], [1] + maker.sp.encode(r["prompt"]))
            self.assertEqual(r["prompt_tokens"], len(r["prompt_ids"]))
            self.assertEqual(r["max_new_tokens"], len(maker.sp.encode(r["prompt"] + r["answer"])) + 2 -
                             r["prompt_tokens"])  # answer tokens + EOS
            self.assertLessEqual(r["prompt_tokens"] + r["max_new_tokens"], r["length"])
            self.assertEqual(tasks.expected_answer(r["task"], r["prompt"]), r["answer"])
            self.assertEqual(json.loads(json.dumps(r)), r)
        again = list(me.records(maker, ["passkey", "vartrack"], [300, 700], [0.0, 1.0], 2, 77, True))
        self.assertEqual(recs, again)
        no_ids = next(me.records(maker, ["multikey"], [300], [0.5], 1, 77, False))
        self.assertNotIn("prompt_ids", no_ids)


class CheckerTest(unittest.TestCase):
    def test_vartrack_follows_the_chain_in_text_order(self):
        prompt = ("x The value 55555 is held by VAR QQQQQ. y The value 12345 is held by VAR AAAAA. The value of "
                  "VAR AAAAA is held by VAR BBBBB. z The value of VAR QQQQQ is held by VAR RRRRR. The value of "
                  "VAR BBBBB is held by VAR CCCCC. w The value of VAR CCCCC is held by VAR DDDDD. Which "
                  "variables hold the value 12345? The value 12345 is held by VAR")
        want = (" AAAAA. The value of VAR AAAAA is held by VAR BBBBB. The value of VAR BBBBB is held by VAR "
                "CCCCC. The value of VAR CCCCC is held by VAR DDDDD.")
        self.assertEqual(tasks.expected_answer("vartrack", prompt), want)
        self.assertTrue(tasks.check("vartrack", prompt, want + "</s>"))
        self.assertTrue(tasks.check("vartrack", prompt, want + " The value of VAR DDDDD is"))  # ran on
        self.assertFalse(tasks.check("vartrack", prompt, want[:want.rindex(" The value")]))  # a hop short
        self.assertFalse(tasks.check("vartrack", prompt, want.replace("VAR CCCCC.", "VAR RRRRR.")))  # the decoy
        self.assertFalse(tasks.check("vartrack", prompt, want[:-1] + "X"))

    def test_multikey_finds_the_queried_key_among_distractors(self):
        prompt = ("The special magic number for red apple is 11111. a The special magic number for blue river "
                  "is 22222. b What is the special magic number for blue river? The special magic number for "
                  "blue river is")
        self.assertEqual(tasks.expected_answer("multikey", prompt), " 22222.")
        self.assertFalse(tasks.check("multikey", prompt, " 11111."))

    def test_multivalue_and_multiquery(self):
        prompt = ("The first special magic number for old tiger is 31415. q The first special magic number for "
                  "red apple is 11111. The second special magic number for old tiger is 27182. What are all the "
                  "special magic numbers for old tiger? The first special magic number for old tiger is")
        want = " 31415. The second special magic number for old tiger is 27182."
        self.assertEqual(tasks.expected_answer("multivalue", prompt), want)
        self.assertTrue(tasks.check("multivalue", prompt, want + " What"))
        self.assertFalse(tasks.check("multivalue", prompt, " 31415."))  # one value short
        self.assertFalse(tasks.check("multivalue", prompt, " 31415. The second special magic number for old "
                                                            "tiger is 11111."))  # the other key's value
        with self.assertRaisesRegex(ValueError, "not numbered first, second"):
            tasks.expected_answer("multivalue", prompt.replace("The second special", "The third special"))
        prompt = ("The special magic number for red apple is 11111. The special magic number for blue river "
                  "is 22222. The special magic number for cold wagon is 33333. What are the special magic "
                  "numbers for cold wagon and for red apple? The special magic number for cold wagon is")
        self.assertEqual(tasks.expected_answer("multiquery", prompt), " 33333, and for red apple is 11111.")

    def test_malformed_prompts_are_errors(self):
        with self.assertRaisesRegex(ValueError, "exactly one passkey needle"):
            tasks.expected_answer("passkey", "The secret passkey is 11111. Remember it. The secret passkey is "
                                  "22222. Remember it. What is the secret passkey? The secret passkey is")
        with self.assertRaisesRegex(ValueError, "exactly one needle for 'red apple'"):
            tasks.expected_answer("multikey", "What is the special magic number for red apple? The special "
                                  "magic number for red apple is")
        with self.assertRaisesRegex(ValueError, "exactly one multikey question"):
            tasks.expected_answer("multikey", "The special magic number for red apple is 11111.")
        with self.assertRaisesRegex(ValueError, "unknown task"):
            tasks.expected_answer("cwe", "text")

    def test_scoring_rule(self):
        self.assertTrue(tasks.is_correct("12345.", " 12345."))
        self.assertTrue(tasks.is_correct(" 12345", " 12345."))  # cut off by max tokens after the core
        self.assertFalse(tasks.is_correct(" 123456.", " 12345."))  # a longer number is wrong
        self.assertFalse(tasks.is_correct(" 1234", " 12345."))
        self.assertFalse(tasks.is_correct("", " 12345."))
        self.assertFalse(tasks.is_correct(" 12345, 6789", " 12345, 67890."))
        self.assertTrue(tasks.is_correct(" 12345, 67890, and", " 12345, 67890."))


class HeldOutCorpusTest(unittest.TestCase):
    """The real held-out haystack (Debian's git RelNotes) holds nothing the checkers would mistake for
    a needle; the fake tokenizer still stands in for SentencePiece."""

    def test_checkers_on_real_heldout_text(self):
        _, held = nd.corpus_files()
        if not held:
            self.skipTest(f"no held-out corpus in {nd.RELNOTES_DIR} (Debian package git)")
        maker = make_maker(nd.load_words(held))
        for task in tasks.TASKS:
            for seed in range(10):
                ex = tasks.generate(task, maker, random.Random(f"held-{seed}"), 4096, seed / 9)
                self.assertEqual(tasks.expected_answer(task, ex.prompt), ex.answer, task)


if __name__ == "__main__":
    unittest.main()
