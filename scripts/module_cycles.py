#!/usr/bin/env python3
"""Cycles among the top-level modules of each crate, and the uses that make them.

A crate's top-level modules are the `mod` items of its src/lib.rs (or src/main.rs). Module
A uses B when a file of A (src/A.rs or anything under src/A/) names `crate::B` (in a path
or a `use crate::{...}` group), or, from src/A.rs itself, `super::B`; comments and unit
tests (what follows `#[cfg(test)]`) do not count. Every module in a
cycle depends on every other: none can be read, changed or tested alone. Issue 26
removed them all.

There are none now, and the check keeps it so: it fails on every use inside a cycle,
naming the file and line, with --list it only prints them.

Usage: scripts/module_cycles.py [--list]
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def workspace_members():
    """The crates of the workspace, as Cargo.toml's `members` names them."""
    import tomllib
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        return tomllib.load(f)["workspace"]["members"]


MOD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)
LINE_COMMENT = re.compile(r"//[^\n]*")


def top_modules(src):
    for root in ("lib.rs", "main.rs"):
        path = os.path.join(src, root)
        if os.path.exists(path):
            with open(path) as f:
                return MOD.findall(LINE_COMMENT.sub("", f.read()))
    return []


def module_files(src, module):
    single = os.path.join(src, f"{module}.rs")
    if os.path.exists(single):
        yield single, True
    folder = os.path.join(src, module)
    for base, _, names in os.walk(folder):
        for name in sorted(names):
            if name.endswith(".rs"):
                path = os.path.join(base, name)
                yield path, path == os.path.join(folder, "mod.rs")


def group_heads(text, start):
    """The first name of each path in the `{...}` group opening at text[start]."""
    depth, pieces, piece = 0, [], ""
    for char in text[start:]:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            break
        if depth == 1 and char == ",":
            pieces.append(piece)
            piece = ""
        elif depth > 1 or char != "{":
            piece += char
    pieces.append(piece)
    return [head.group(0) for head in (re.match(r"\w+", piece.strip()) for piece in pieces) if head]


def uses(path, at_top):
    """(module name, line) for each `crate::X` (and, at a module's top file, `super::X`)."""
    with open(path) as f:
        # A file's unit tests (a `#[cfg(test)]` module at its end) are not its design.
        text = LINE_COMMENT.sub("", f.read()).split("#[cfg(test)]")[0]
    prefixes = ["crate"] + (["super"] if at_top else [])
    for prefix in prefixes:
        for match in re.finditer(rf"\b{prefix}::(\w+|\{{)", text):
            line = text.count("\n", 0, match.start()) + 1
            if match.group(1) == "{":
                for head in group_heads(text, match.start(1)):
                    yield head, line
            else:
                yield match.group(1), line


def graph(crate_dir):
    src = os.path.join(crate_dir, "src")
    modules = top_modules(src)
    edges = {}
    for module in modules:
        for path, at_top in module_files(src, module):
            for used, line in uses(path, at_top):
                if used in modules and used != module:
                    edges.setdefault((module, used), f"{os.path.relpath(path, ROOT)}:{line}")
    return modules, edges


def components(modules, edges):
    """Strongly connected components of more than one module (Tarjan)."""
    after = {module: [to for (frm, to) in edges if frm == module] for module in modules}
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(module):
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for to in after[module]:
            if to not in index:
                visit(to)
                low[module] = min(low[module], low[to])
            elif to in on_stack:
                low[module] = min(low[module], index[to])
        if low[module] == index[module]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(component)

    for module in modules:
        if module not in index:
            visit(module)
    return found


def cyclic_uses():
    """{"crate: from -> to": where} for each use inside a cycle, every crate."""
    found = {}
    for crate in workspace_members():
        crate_dir = os.path.join(ROOT, crate)
        if not os.path.isdir(os.path.join(crate_dir, "src")):
            continue
        modules, edges = graph(crate_dir)
        for component in components(modules, edges):
            for (frm, to), where in edges.items():
                if frm in component and to in component:
                    found[f"{crate}: {frm} -> {to}"] = where
    return found


def main():
    found = cyclic_uses()
    if "--list" in sys.argv[1:]:
        for use in sorted(found):
            print(use)
        return 0
    for use, where in sorted(found.items()):
        print(f"error: {use} ({where}) closes a cycle among top-level modules; "
              "make the lower module not need the higher one")
    if not found:
        print("module cycles: none")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
