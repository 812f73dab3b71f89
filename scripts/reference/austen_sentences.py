"""Reference for burn_compress::text::sentences (tests/suite/real_lm.rs).

The rules of crates/burn-compress/src/text.rs, written independently with Python's re:
paragraphs at blank lines ("\n\n"), a paragraph of at most 4 words whose letters are all
upper case is a heading and dropped, underscores removed, a sentence ends at a word whose
last character (before closing quotes/brackets) is ! or ?, or . unless the word (without
leading quotes/brackets and trailing periods) is a title (Mr, Mrs, Dr, St, Col, Esq).

Usage: python3 scripts/reference/austen_sentences.py [data/external/austen]
"""
import re
import sys
from pathlib import Path

TITLES = {"Mr", "Mrs", "Dr", "St", "Col", "Esq"}
CLOSE = "\"')]\u201d\u2019"
OPEN = "\"'(\u201c\u2018"


def is_heading(words):
    if len(words) > 4:
        return False
    return all(not c.isalpha() or c.isupper() for w in words for c in w)


def ends(word):
    core = word.rstrip(CLOSE)
    if not core:
        return False
    if core[-1] in "!?":
        return True
    if core[-1] == ".":
        return core.rstrip(".").lstrip(OPEN) not in TITLES
    return False


def sentences(text):
    out = []
    for para in text.split("\n\n"):
        words = para.split()
        if not words or is_heading(words):
            continue
        cur = []
        for w in words:
            w = w.replace("_", "")
            if not w:
                continue
            cur.append(w)
            if ends(w):
                out.append(" ".join(cur))
                cur = []
        if cur:
            out.append(" ".join(cur))
    return out


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "data/external/austen")
    for novel in ["emma", "persuasion", "northanger-abbey"]:
        s = sentences((root / f"{novel}.txt").read_text(encoding="utf-8"))
        print(novel, len(s))
        for x in s[:3]:
            print("  ", repr(x))
    sample = 'CHAPTER I\n\n"Mr. Smith said _so_." Did he?  Yes! (Mrs. Jones agreed.)\nNo end'
    print(sentences(sample))


if __name__ == "__main__":
    main()
