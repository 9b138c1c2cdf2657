#!/usr/bin/env python3
"""No module imports another that imports it back: checks each crate root given.

Usage: python3 tests/modcycles.py CRATE_ROOT_FILE...   (e.g. client/rust/src/lib.rs)

Edges are a module's references to `crate::a::b`, `super::x`, `self::x` and `child::x`
(its own child modules), in `use` items and paths, resolved to the longest module that
exists; a parent's `pub use child::X` and a child's `use super::Y` both count, so a
parent that only declares and re-exports its children is fine as long as the children
never import the parent back. Test modules declared inline (`#[cfg(test)] mod tests {`)
are left out. Prints each cycle (a strongly connected component of more than one module)
with its edges and exits 1 if there is any. It reads text: a good approximation of
`cargo modules dependencies --acyclic` that needs nothing but python3.
"""
import os, re, sys


def check(root_file):
    mods = {}  # module path tuple -> file

    def add(path, f):
        mods[path] = f
        src = open(f).read()
        base = os.path.dirname(f) if os.path.basename(f) in ("lib.rs", "main.rs", "mod.rs") else os.path.splitext(f)[0]
        for m in re.finditer(r'(?m)^\s*(?:#\[path\s*=\s*"([^"]+)"\]\s*)?(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', src):
            pathattr, name = m.group(1), m.group(2)
            if pathattr:
                cand = [os.path.join(os.path.dirname(f), pathattr)]
            else:
                cand = [os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")]
            for c in cand:
                if os.path.exists(c):
                    add(path + (name,), c); break

    add((), root_file)
    edges = {m: set() for m in mods}
    for m, f in mods.items():
        src = open(f).read()
        src = re.sub(r'//[^\n]*', '', src)
        # drop #[cfg(test)] mod tests { ... } blocks roughly: ignore lines after '#[cfg(test)]\nmod tests {'
        i = src.find('#[cfg(test)]\nmod tests {')
        if i >= 0: src = src[:i]
        uses = []
        for stmt in re.findall(r'\buse\s+([^;]+);', src):
            stmt = re.sub(r'\s+', '', stmt)
            def expand(prefix, s):
                j = s.find('{')
                if j < 0: uses.append(prefix + s); return
                head = s[:j]; body = s[j+1:s.rfind('}')]
                depth = 0; cur = ''
                for ch in body:
                    if ch == ',' and depth == 0: expand(prefix + head, cur); cur = ''; continue
                    if ch == '{': depth += 1
                    if ch == '}': depth -= 1
                    cur += ch
                if cur: expand(prefix + head, cur)
            expand('', stmt)
        uses += re.findall(r'\b((?:crate|super|self)(?:::\w+)+)', src)
        for u in uses:
            parts = [p for p in u.split('::') if p]
            if not parts: continue
            if parts[0] == 'crate': target = (); rest = parts[1:]
            elif parts[0] == 'super':
                target = m
                while parts and parts[0] == 'super': target = target[:-1]; parts = parts[1:]
                rest = parts
            elif parts[0] == 'self': target = m; rest = parts[1:]
            elif m + (parts[0],) in mods: target = m; rest = parts
            else: continue
            for p in rest:
                if target + (p,) in mods: target = target + (p,)
                else: break
            if target != m and not (len(target) < len(m) and m[:len(target)] == target and target == ()):
                edges[m].add(target)
    # Tarjan
    index = {}; low = {}; stack = []; on = set(); sccs = []; n = [0]
    sys.setrecursionlimit(10000)
    def strong(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index: strong(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: sccs.append(comp)
    for v in mods:
        if v not in index: strong(v)
    name = lambda t: '::'.join(t) or 'crate'
    for c in sccs:
        print(root_file + ': cycle:', ', '.join(sorted(name(x) for x in c)))
        for a in c:
            for b in edges[a]:
                if b in c: print('   ', name(a), '->', name(b))
    if not sccs: print(root_file + ': no cycles among', len(mods), 'modules')
    return not sccs


if __name__ == '__main__':
    ok = all([check(root) for root in sys.argv[1:]])
    sys.exit(0 if ok else 1)
