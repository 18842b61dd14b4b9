#!/usr/bin/env python3
"""Builds pairs.jsonl, prompt/completion rows for supervised fine-tuning, from the shipped addresses.

usage: python3 make_pairs.py ../sotu > pairs.jsonl
Each row: {"prompt": "<year> <president>: " + one sentence, "completion": " " + the next such sentence},
from every 12th sentence of every address, sentences of 40 to 240 characters only.
"""
import json, os, re, sys

root = sys.argv[1]
for name in sorted(n for n in os.listdir(root) if n.endswith('.txt')):
    year, *who = os.path.splitext(name)[0].split('_')
    president = ' '.join(w.capitalize() for w in who[:-1])  # the last part is the party
    with open(os.path.join(root, name), encoding='utf-8') as f:
        text = ' '.join(f.read().split())
    sentences = [s for s in re.split(r'(?<=[.!?])\s+', text) if 40 <= len(s) <= 240]
    for i in range(0, len(sentences) - 1, 12):
        print(json.dumps({'prompt': f'{year} {president}: {sentences[i]}', 'completion': ' ' + sentences[i + 1]},
                         ensure_ascii=False))
