#!/usr/bin/env python3
"""No source file over 800 lines: a file that long holds more than one idea.

Counted: every .rs file under a workspace crate's src/, but for unit-test modules (a file
named tests.rs or *_tests.rs, which holds a `#[cfg(test)]` module's body). Integration
tests (a crate's tests/) are test code too and not counted. A file's inline unit tests
count with it: move them to a tests.rs beside it (`#[cfg(test)] mod tests;`).

There are none now (issue 26 split the twelve that were), and the check keeps it so.

Usage: scripts/file_sizes.py [--list]
"""

import os
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    for path, lines in sorted(found.items()):
        if "--list" in sys.argv[1:]:
            print(f"{path} {lines}")
        else:
            print(f"error: {path} has {lines} lines, over {LIMIT}: split it by what its parts do")
    if not found:
        print(f"file sizes: none over {LIMIT} lines")
    return 1 if found and "--list" not in sys.argv[1:] else 0


if __name__ == "__main__":
    sys.exit(main())
