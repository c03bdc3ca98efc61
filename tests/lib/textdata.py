"""Small character texts for the sequence tests (tests/cli/
test_portable_seq.py, tests/daemon/test_sequences.py, tests/torch/
test_sequences.py): sentences of a few words drawn from a seeded RNG, and
a text dataset made of one (what `trainctl dataset import` writes for
--vocab char).

- corpus(n, seed=3, words=WORDS): at least n characters, the same for the
  same arguments; WORDS has two words beyond ASCII, ASCII_WORDS none.
- text_dataset(root, name, text): root/name/corpus.txt and its
  dataset.json (vocab char, the text's code points sorted, a tenth held
  out for test); returns the code points."""
import json
import os
import random

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "big", "red", "house", "and",
         "fish", "swam", "in", "blue", "sea", "Über", "café"]
ASCII_WORDS = WORDS[:18]


def corpus(n, seed=3, words=WORDS):
    r = random.Random(seed)
    text = ""
    while len(text) < n:
        text += " ".join(r.choice(words) for _ in range(r.randint(3, 8))) + ".\n"
    return text


def text_dataset(root, name, text):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "corpus.txt"), "w") as f:
        f.write(text)
    cps = sorted(set(ord(c) for c in text))
    with open(os.path.join(d, "dataset.json"), "w") as f:
        json.dump({"vocab": "char", "files": ["corpus.txt"], "code_points": cps, "test_fraction": 0.1}, f)
    return cps
