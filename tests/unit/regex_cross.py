#!/usr/bin/env python3
"""Write tests/unit/regex_cross.txt: patterns, strings and Python's verdicts.

For each pattern: strings generated to match it (by walking Python's own
parse of the pattern), near misses made from them by one edit, and random
strings over the pattern's alphabet; the verdict is re.fullmatch (mode F)
or re.search (mode S, REGEX_SEARCH).  test_grammar_regex.c compares
llamad's DFA with every line.  The patterns avoid the few places where
Python and ECMAScript differ ({,n}, '[]', non-ASCII \\s, '$' before a final
newline, [^..] and newline: llamad's negated classes never match '\\n').

Format, one record a line, fields hex-encoded UTF-8:
  P <mode> <pattern>        a pattern, mode F or S
  <0|1> <string>            a string and whether Python accepts it
Run: python3 tests/unit/regex_cross.py > tests/unit/regex_cross.txt
"""
import random
import re
import re._parser as sp
import re._constants as sc

PATTERNS = [
    ("F", r"abc"), ("F", r"a|b|cd"), ("F", r"[a-c]+"), ("F", r"[^a-c]*"), ("F", r"a?b*c+"),
    ("F", r"(ab|cd)*e"), ("F", r"(?:a|b){2,4}"), ("F", r"x{3}"), ("F", r"x{2,}y"),
    ("F", r"\d{3}-\d{4}"), ("F", r"\w+@\w+\.com"), ("F", r"\s*a\s*"), ("F", r"\D\W\S"),
    ("F", r"[0-9a-fA-F]{1,4}"), ("F", r"(a|ab)(c|bcd)(d*)"), ("F", r"(a*)*b"), ("F", r"(a|a)*b"),
    ("F", r"(a+)+c"), ("F", r"[а-я]+"), ("F", r"😀+x?"), ("F", r"é|e\u0301"), ("F", r".{2,3}"),
    ("F", r"[.\-+*]+"), ("F", r"\x41\u00e9[\x30-\x39]"), ("F", r"a.c"), ("F", r"[\d\s]+"),
    ("F", r"(?:[a-z]+\.)*[a-z]+"), ("F", r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?"),
    ("F", r"\d{4}-\d{2}-\d{2}"), ("F", r"(true|false|null)"), ("F", r"[^\d]+"),
    ("F", r"a{0}b"), ("F", r"(a?){3}"), ("F", r"[\t ]*[^ \t]+"),
    ("S", r"ab"), ("S", r"^ab"), ("S", r"ab$"), ("S", r"^a+$"), ("S", r"^a|b$"), ("S", r"\d\d"),
    ("S", r"^[a-z]+@[a-z]+\.[a-z]{2,3}$"), ("S", r"x*"),
]

ALPHABET = "abcdexyz019-_.+*@ \tAZé😀яфé\u0301"

def gen(items, rnd, depth=0):
    out = []
    for op, av in items:
        out.append(gen_one(op, av, rnd, depth))
    return "".join(out)

def pick_in(av, rnd):
    chars = []
    neg = False
    for op, a in av:
        if op == sc.NEGATE:
            neg = True
        elif op == sc.LITERAL:
            chars.append(chr(a))
        elif op == sc.RANGE:
            chars += [chr(a[0]), chr(a[1]), chr(rnd.randint(a[0], a[1]))]
        elif op == sc.CATEGORY:
            chars += {sc.CATEGORY_DIGIT: "0395", sc.CATEGORY_WORD: "aZ_7",
                      sc.CATEGORY_SPACE: " \t\r", sc.CATEGORY_NOT_DIGIT: "a-é",
                      sc.CATEGORY_NOT_WORD: "-é ", sc.CATEGORY_NOT_SPACE: "ax9"}[a]
    if neg:
        cand = [c for c in ALPHABET if c != "\n"]
        rnd.shuffle(cand)
        return cand[0]
    return rnd.choice(chars)

def gen_one(op, av, rnd, depth):
    if op == sc.LITERAL:
        return chr(av)
    if op == sc.NOT_LITERAL:
        return rnd.choice([c for c in "ab9é" if ord(c) != av])
    if op == sc.ANY:
        return rnd.choice("ab9é😀 .")
    if op == sc.IN:
        return pick_in(av, rnd)
    if op == sc.BRANCH:
        return gen(rnd.choice(av[1]), rnd, depth + 1)
    if op == sc.SUBPATTERN:
        return gen(av[3], rnd, depth + 1)
    if op in (sc.MAX_REPEAT, sc.MIN_REPEAT):
        lo, hi, sub = av
        hi = min(hi, lo + 4)
        return "".join(gen(sub, rnd, depth + 1) for _ in range(rnd.randint(lo, hi)))
    if op == sc.AT:
        return ""
    raise ValueError(op)

def mutate(s, rnd):
    i = rnd.randint(0, len(s))
    k = rnd.randint(0, 2)
    c = rnd.choice(ALPHABET)
    if k == 0 and s:
        i = min(i, len(s) - 1)
        return s[:i] + s[i + 1:]
    if k == 1:
        return s[:i] + c + s[i:]
    i = min(i, len(s) - 1) if s else 0
    return s[:i] + c + s[i + 1:]

def hexs(s):
    return s.encode("utf-8").hex() or "-"

def main():
    rnd = random.Random(15)
    for mode, pat in PATTERNS:
        rx = re.compile(pat, re.ASCII)
        check = rx.fullmatch if mode == "F" else rx.search
        tree = sp.parse(pat)
        strings = set()
        for _ in range(12):
            s = gen(tree, rnd)
            strings.add(s)
            strings.add(mutate(s, rnd))
            strings.add(mutate(mutate(s, rnd), rnd))
        for _ in range(10):
            strings.add("".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 6))))
        print("P", mode, hexs(pat))
        for s in sorted(strings):
            print(1 if check(s) else 0, hexs(s))

main()
