"""Generate a realistic peerbox script of a given length for the compile benchmark.

The script is made of repeated blocks, each a few top-level functions (loops,
maps, arrays, strings, closures, switch, try/catch) followed by top-level
statements calling them, so the compiler sees the mix of constructs real
scripts use rather than one construct repeated. Every block is renamed with
its index so function names are unique; a ``nonce`` comment on the first line
makes each generated source distinct, which defeats any content-hash cache.
"""

from __future__ import annotations

_BLOCK = """\
// ---- block {k}: records, labels and tables ----
fn score_{k}(items, bias) {{
    let total = 0;
    for item in items {{
        if item.kind == "a" {{
            total += item.value * 2 + bias;
        }} else if item.kind == "b" {{
            total += item.value - bias;
        }} else {{
            total += 1;
        }}
    }}
    total
}}

fn label_{k}(n) {{
    let parts = [];
    let i = 0;
    while i < n {{
        parts.push(`item-${{i}}`);
        i += 1;
    }}
    let s = "";
    for p in parts {{
        s += p + ",";
    }}
    switch n % 3 {{
        0 => s.to_upper(),
        1 => s.sub_string(0, 3),
        _ => s,
    }}
}}

fn table_{k}(keys) {{
    let m = #{{}};
    for (key, i) in keys {{
        m[key] = #{{ index: i, name: key, tags: [] }};
        m[key].tags.push("t" + i);
    }}
    let picked = m.keys().filter(|key| key.len() > 1);
    let idx = picked.map(|key| m[key].index);
    idx.reduce(|acc, x| acc + x, 0)
}}

private fn safe_div_{k}(a, b) {{
    let r = 0;
    try {{
        r = a / b;
    }} catch (e) {{
        if e.kind != "division_by_zero" {{ throw e; }}
    }}
    r
}}

let items{k} = [#{{ kind: "a", value: {k} }}, #{{ kind: "b", value: 3 }}, #{{ kind: "c", value: 0 }}];
let r{k} = score_{k}(items{k}, {k});
let l{k} = label_{k}({k} % 5 + 1);
let t{k} = table_{k}(["x", "yy", "zzz", "wwww"]);
results.push(r{k} + l{k}.len() + t{k} + safe_div_{k}({k}, {k} % 2));
"""

_HEADER = """\
// generated benchmark script ({nonce})
let results = [];
"""

_FOOTER = """\
let total = 0;
for r in results {
    total += r;
}
#{ count: results.len(), total: total }
"""


def generate(min_lines: int = 1000, nonce: str = "0") -> str:
    """A script of at least ``min_lines`` lines (one block more than needed at most)."""
    out = [_HEADER.format(nonce=nonce)]
    count = _HEADER.count("\n") + _FOOTER.count("\n")
    k = 0
    while count < min_lines:
        block = _BLOCK.format(k=k)
        out.append(block)
        count += block.count("\n")
        k += 1
    out.append(_FOOTER)
    return "".join(out)


def expected_value(min_lines: int = 1000) -> dict[str, int]:
    """The value the script from ``generate(min_lines)`` must return (computed in Python)."""
    blocks = generate(min_lines).count("// ---- block ")
    total = 0
    for k in range(blocks):
        score = (k * 2 + k) + (3 - k) + 1
        n = k % 5 + 1
        label = 3 if n % 3 == 1 else len("".join(f"item-{i}," for i in range(n)))
        table = 3 + 1 + 2  # indexes of the keys longer than one char: wwww, yy, zzz
        div = 0 if k % 2 == 0 else k
        total += score + label + table + div
    return {"count": blocks, "total": total}


def line_count(src: str) -> int:
    return src.count("\n") + (0 if src.endswith("\n") else 1)


if __name__ == "__main__":
    import sys

    sys.stdout.write(generate(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
