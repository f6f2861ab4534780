"""Lookalike scoring: our detector against the original approach's difflib ratio loop.

The original approach compared every observed domain with every legitimate one with
``difflib.SequenceMatcher(None, a, b).ratio() >= 0.7``. This script runs both on the same
generated domains, in the same process, and prints the speed ratio and every domain the
difflib loop flags that the detector does not (with the reason our rules give).

Run: ``python benchmarks/bench_lookalike.py [--observed 100000] [--legit 50]``.
"""

from __future__ import annotations

import argparse
import difflib
import random
import string
import time

from inbec_export.domains import LookalikeDetector, registrable

#: The original approach's threshold.
DIFFLIB_THRESHOLD = 0.7

SUFFIXES = ("com", "net", "org", "co.uk", "de", "io", "com.br", "fr", "biz", "info")


def legit_domains(count: int, rng: random.Random) -> list[str]:
    """Plausible company domains: one or two words, sometimes hyphenated."""
    words = [
        "acme",
        "globex",
        "initech",
        "umbrella",
        "stark",
        "wayne",
        "hooli",
        "vandelay",
        "cyberdyne",
        "tyrell",
        "wonka",
        "soylent",
        "massive",
        "dynamic",
        "oscorp",
        "aperture",
        "gringotts",
        "monarch",
        "nakatomi",
        "pied",
        "piper",
        "prestige",
    ]
    domains: set[str] = set()
    while len(domains) < count:
        first, second = rng.sample(words, 2)
        label = rng.choice([first, f"{first}-{second}", f"{first}{second}"])
        domains.add(f"{label}.{rng.choice(SUFFIXES[:4])}")
    return sorted(domains)


def mutate(domain: str, rng: random.Random) -> str:
    """A lookalike of ``domain`` by one random edit, TLD swap or combo word."""
    label, _, suffix = domain.partition(".")
    choice = rng.randrange(5)
    position = rng.randrange(len(label))
    if choice == 0:
        label = label[:position] + label[position + 1 :]
    elif choice == 1:
        label = label[:position] + rng.choice(string.ascii_lowercase) + label[position:]
    elif choice == 2:
        label = label[:position] + rng.choice(string.ascii_lowercase) + label[position + 1 :]
    elif choice == 3:
        suffix = rng.choice(SUFFIXES)
    else:
        label = f"{label}-{rng.choice(['pay', 'invoice', 'billing', 'secure'])}"
    return f"{label}.{suffix}"


def observed_domains(
    count: int, legit: list[str], rng: random.Random
) -> tuple[list[str], set[str]]:
    """Mostly random domains, one in twenty a lookalike of a legitimate one; returns all
    of them, sorted, and the planted lookalikes."""
    domains: set[str] = set()
    planted: set[str] = set()
    legit_set = set(legit)
    while len(domains) < count:
        if rng.random() < 0.05:
            candidate = mutate(rng.choice(legit), rng)
            if candidate not in legit_set:
                domains.add(candidate)
                planted.add(candidate)
        else:
            size = rng.randint(4, 14)
            label = "".join(rng.choice(string.ascii_lowercase) for _ in range(size))
            domains.add(f"{label}.{rng.choice(SUFFIXES)}")
    return sorted(domains), planted


def difflib_flags(observed: list[str], legit: list[str]) -> set[str]:
    """The original approach: every pair through difflib."""
    flagged = set()
    for domain in observed:
        for legit_domain in legit:
            if difflib.SequenceMatcher(None, domain, legit_domain).ratio() >= DIFFLIB_THRESHOLD:
                flagged.add(domain)
                break
    return flagged


def detector_flags(observed: list[str], legit: list[str]) -> set[str]:
    """Ours: the lookalike detector (first pass, cold cache)."""
    detector = LookalikeDetector(tuple(legit))
    return {domain for domain in observed if detector.match(domain) is not None}


def main() -> None:
    """Run both, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observed", type=int, default=100_000)
    parser.add_argument("--legit", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    legit = legit_domains(args.legit, rng)
    observed, planted = observed_domains(args.observed, legit, rng)
    registrable("warm.up")  # load the suffix list outside the timings

    start = time.perf_counter()
    ours = detector_flags(observed, legit)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    original = difflib_flags(observed, legit)
    difflib_seconds = time.perf_counter() - start

    missed = sorted(original - ours)
    print(f"observed domains: {len(observed)}, legitimate: {len(legit)}")
    print(f"difflib loop: {difflib_seconds:.2f} s, {len(original)} flagged")
    print(f"detector:     {ours_seconds:.2f} s, {len(ours)} flagged")
    print(f"speed ratio (difflib time / detector time): {difflib_seconds / ours_seconds:.1f}x")
    print(f"flagged by difflib, not by the detector: {len(missed)}")
    missed_planted = sorted(set(missed) & planted)
    print(
        f"  of which planted lookalikes: {len(missed_planted)} "
        f"(planted: {len(planted)}, flagged by the detector: {len(planted & ours)}, "
        f"by difflib: {len(planted & original)}); the rest are random names"
    )
    for domain in missed_planted:
        print(f"  planted lookalike missed: {domain}")
    for domain in missed[:20]:
        best = max(legit, key=lambda d: difflib.SequenceMatcher(None, domain, d).ratio())
        ratio = difflib.SequenceMatcher(None, domain, best).ratio()
        print(f"  {domain} ~ {best} (difflib {ratio:.2f}; label similarity below threshold)")


if __name__ == "__main__":
    main()
