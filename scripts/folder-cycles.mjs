// Lists import cycles between the folders under src/ (a file directly in
// src/ is its own node). Type-only imports count: they couple as much.
// Usage: node scripts/folder-cycles.mjs   (exit 1 when a cycle exists)
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(new URL("..", import.meta.url).pathname, "src");
const files = [];
const walk = (d) => {
  for (const n of readdirSync(d)) {
    const p = join(d, n);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith(".ts")) files.push(p);
  }
};
walk(root);

/** src/stores/redis/x.ts → "stores/redis"; src/errors.ts → "errors.ts". */
const node = (file) => {
  const rel = relative(root, file);
  const parts = rel.split("/");
  if (parts.length === 1) return rel;
  if (parts[0] === "stores" && parts.length > 2) return `${parts[0]}/${parts[1]}`;
  return parts[0];
};

const edges = new Map();
for (const f of files) {
  const src = readFileSync(f, "utf8");
  for (const m of src.matchAll(
    /(?:import|export)[^"']*?from\s+["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g,
  )) {
    const spec = m[1] ?? m[2];
    const target = resolve(dirname(f), spec).replace(/\.js$/, ".ts");
    const a = node(f);
    const b = node(target);
    if (a === b) continue;
    if (!edges.has(a)) edges.set(a, new Map());
    if (!edges.get(a).has(b)) edges.get(a).set(b, `${relative(root, f)} → ${spec}`);
  }
}

// Tarjan's strongly connected components.
let index = 0;
const idx = new Map();
const low = new Map();
const stack = [];
const on = new Set();
const sccs = [];
const strong = (v) => {
  idx.set(v, index);
  low.set(v, index++);
  stack.push(v);
  on.add(v);
  for (const w of edges.get(v)?.keys() ?? []) {
    if (!idx.has(w)) {
      strong(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
  }
  if (low.get(v) === idx.get(v)) {
    const c = [];
    let w;
    do {
      w = stack.pop();
      on.delete(w);
      c.push(w);
    } while (w !== v);
    if (c.length > 1) sccs.push(c);
  }
};
for (const v of new Set([...files.map(node)])) if (!idx.has(v)) strong(v);

if (sccs.length === 0) {
  console.log(`no import cycle between folders (${files.length} files)`);
} else {
  for (const c of sccs) {
    console.log(`cycle: ${c.join(", ")}`);
    for (const a of c)
      for (const [b, why] of edges.get(a) ?? []) if (c.includes(b)) console.log(`  ${why}`);
  }
  process.exitCode = 1;
}
