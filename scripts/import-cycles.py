#!/usr/bin/env python3
"""Import circles among a crate's modules: one edge per `use crate::..` / `use super::..` tree
and inline `crate::a::b` / `super::a` path, resolved to the module file that holds it (inline test
modules left out); prints each strongly connected component of more than one file.

Usage: scripts/import-cycles.py api-gateway/src dial-worker/src ..."""
import os, re, sys

def modpath(src, f):
    rel = os.path.relpath(f, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)

def strip(text):
    text = re.sub(r'//[^\n]*', '', text)
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text

def expand(tree):
    tree = tree.strip()
    m = re.match(r'^(.*?)\{(.*)\}$', tree, re.S)
    if not m:
        return [re.sub(r'\s+as\s+\w+$', '', tree).replace(' ', '')]
    prefix, inner = m.group(1).replace(' ', '').replace('\n', ''), m.group(2)
    parts, depth, cur = [], 0, ''
    for ch in inner:
        if ch == '{': depth += 1
        if ch == '}': depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur); cur = ''
        else:
            cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p.strip():
            out += [prefix + e for e in expand(p)]
    return out

def resolve(path, here, mods):
    segs = [s for s in path.split('::') if s]
    if not segs: return None
    if segs[0] == 'crate':
        base, segs = [], segs[1:]
    elif segs[0] in ('super', 'self'):
        # `self::` in module m names m; each `super::` goes up one.
        base = list(here)
        while segs and segs[0] in ('super', 'self'):
            if segs[0] == 'super': base = base[:-1]
            segs = segs[1:]
    else:
        return None
    full = base + segs
    for n in range(len(full), -1, -1):
        if tuple(full[:n]) in mods:
            return tuple(full[:n])
    return None

def graph(src):
    files = []
    for d, _, fs in os.walk(src):
        if os.path.relpath(d, src).split(os.sep)[0] == 'bin': continue
        files += [os.path.join(d, f) for f in fs if f.endswith('.rs')]
    mods = {modpath(src, f): f for f in files if os.path.basename(f) != 'main.rs'}
    edges = {m: set() for m in mods}
    for m, f in mods.items():
        text = strip(open(f).read())
        # An inline test module's `super::` is the file's own module, not its parent: drop it.
        text = re.split(r'#\[cfg\(test\)\]\s*mod\s+\w+\s*\{', text)[0]
        paths = []
        for u in re.finditer(r'\buse\s+([^;]+);', text):
            paths += expand(u.group(1))
        paths += re.findall(r'\b(?:crate|super|self)(?:::\w+)+', text)
        for p in paths:
            t = resolve(p, m, mods)
            if t is not None and t != m and t != ():
                edges[m].add(t)
    return mods, edges

def sccs(edges):
    idx, low, st, on, out, i = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        idx[v] = low[v] = i[0]; i[0] += 1; st.append(v); on.add(v)
        for w in edges[v]:
            if w not in idx:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            c = []
            while True:
                w = st.pop(); on.discard(w); c.append(w)
                if w == v: break
            out.append(c)
    for v in edges:
        if v not in idx: visit(v)
    return out

name = lambda m: '::'.join(m) or 'lib'
for src in sys.argv[1:]:
    mods, edges = graph(src)
    cyc = [c for c in sccs(edges) if len(c) > 1]
    print(f"{src}: {len(mods)} modules, {sum(map(len, edges.values()))} edges, {len(cyc)} cycle(s)")
    for c in cyc:
        print(f"  {len(c)} files: " + ', '.join(sorted(map(name, c))))
        cs = set(c)
        for v in sorted(c):
            print(f"    {name(v)} -> " + ', '.join(sorted(name(w) for w in edges[v] if w in cs)))
