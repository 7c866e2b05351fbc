"""The module map holds: docs/design.md lists every module of src/ and
include/sluice/ by layer, and no #include points up a layer or closes a loop
(as Chromium's DEPS files and Linux's checkpatch hold theirs). A module is a
.c file and its header of the same name; a types-only header (NAME-t.h, as
HAProxy keeps them) is a module of its own."""
import re

from harness import ROOT

INCLUDE = re.compile(r'^\s*#\s*include\s+"sluice/([A-Za-z0-9_-]+)\.h"', re.M)


def layers():
    """{module: layer number} from docs/design.md's "Modules by layer" table."""
    text = (ROOT / "docs" / "design.md").read_text()
    table = text[text.index("## Modules by layer"):]
    out = {}
    for line in table.splitlines():
        m = re.match(r"^\|\s*(\d+)\s[^|]*\|([^|]*)\|", line)
        if not m:
            continue
        for mod in re.findall(r"`([A-Za-z0-9_-]+)`", m.group(2)):
            assert mod not in out, f"docs/design.md lists {mod} twice"
            out[mod] = int(m.group(1))
    return out


def modules():
    """{module: {(file, line, included module)}} for every .c and header."""
    out = {}
    for path in list((ROOT / "src").glob("*.c")) + list((ROOT / "include" / "sluice").glob("*.h")):
        text = path.read_text()
        deps = out.setdefault(path.stem, set())
        for m in INCLUDE.finditer(text):
            if m.group(1) != path.stem:
                line = text.count("\n", 0, m.start()) + 1
                deps.add((f"{path.relative_to(ROOT)}", line, m.group(1)))
    return out


def loops(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    mods, layer = modules(), layers()
    missing = sorted(set(mods) - set(layer))
    assert not missing, f"modules not in docs/design.md's 'Modules by layer': {missing}"
    gone = sorted(set(layer) - set(mods))
    assert not gone, f"docs/design.md lists modules that do not exist: {gone}"


def test_no_include_points_up_a_layer():
    mods, layer = modules(), layers()
    up = [f"{f}:{line}: {mod} (layer {layer[mod]}) includes {dep} (layer {layer[dep]})"
          for mod, deps in mods.items() for f, line, dep in deps
          if mod in layer and dep in layer and layer[dep] > layer[mod]]
    assert not up, "\n".join(sorted(up))


def test_no_modules_include_each_other_in_a_loop():
    graph = {mod: {dep for _, _, dep in deps} for mod, deps in modules().items()}
    assert loops(graph) == []


def test_the_checks_see_a_loop_and_an_upward_include():
    """The checks themselves: a made-up loop and a made-up upward include are found."""
    assert loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert loops({"a": {"b"}, "b": set()}) == []
    layer = layers()
    low = min(layer, key=layer.get)
    high = max(layer, key=layer.get)
    assert layer[high] > layer[low]  # the table has more than one layer to point up from
