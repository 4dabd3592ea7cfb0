#!/usr/bin/env python3
"""No source file over 800 lines: a file that long holds more than one idea.

Counted: every .rs file under a workspace crate's src/, but for unit-test modules (a file
named tests.rs or *_tests.rs, which holds a `#[cfg(test)]` module's body). Integration
tests (a crate's tests/) are test code too and not counted. A file's inline unit tests
count with it: move them to a tests.rs beside it (`#[cfg(test)] mod tests;`).

Until issue 26 is done this is a ratchet: scripts/file_sizes.allowed lists the files over
the limit today with their length, and the check fails when a file not listed goes over,
when a listed one grows, and when a listed one is back under the limit (take it off).

Usage: scripts/file_sizes.py [--list]
"""

import os
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOWED = os.path.join(ROOT, "scripts", "file_sizes.allowed")
LIMIT = 800


def workspace_members():
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        return tomllib.load(f)["workspace"]["members"]


def is_unit_test_module(name):
    return name == "tests.rs" or name.endswith("_tests.rs")


def long_files():
    """{path: lines} for each counted file over the limit."""
    found = {}
    for crate in workspace_members():
        for base, _, names in os.walk(os.path.join(ROOT, crate, "src")):
            for name in sorted(names):
                if not name.endswith(".rs") or is_unit_test_module(name):
                    continue
                path = os.path.join(base, name)
                with open(path) as f:
                    lines = sum(1 for _ in f)
                if lines > LIMIT:
                    found[os.path.relpath(path, ROOT)] = lines
    return found


def main():
    found = long_files()
    if "--list" in sys.argv[1:]:
        for path, lines in sorted(found.items()):
            print(f"{path} {lines}")
        return 0
    allowed = {}
    if os.path.exists(ALLOWED):
        with open(ALLOWED) as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    path, lines = line.split()
                    allowed[path] = int(lines)
    errors = []
    for path, lines in sorted(found.items()):
        if path not in allowed:
            errors.append(f"{path} has {lines} lines, over {LIMIT}: split it by what its parts do")
        elif lines > allowed[path]:
            errors.append(f"{path} grew to {lines} lines (listed at {allowed[path]}, over {LIMIT}): split it, don't grow it")
    for path in sorted(set(allowed) - set(found)):
        errors.append(f"{path} is no longer over {LIMIT} lines: take it off scripts/file_sizes.allowed")
    for error in errors:
        print(f"error: {error}")
    if not errors:
        print(f"file sizes: {len(found)} files over {LIMIT} lines, all listed, none grown")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
