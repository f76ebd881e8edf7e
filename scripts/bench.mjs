#!/usr/bin/env node
// Runs every workspace's `bench` script, collects the `BENCH_JSON {...}` line each prints, and writes one
// markdown report (bench-results/latest.md) with the machine description and every ratio against its baseline.
// Usage: npm run bench [-- workspace-substring ...]
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const filters = process.argv.slice(2);

function workspacesWithBench() {
  const out = [];
  for (const group of ["packages", "examples"]) {
    for (const ws of readdirSync(join(root, group))) {
      const dir = join(root, group, ws);
      const pkgFile = join(dir, "package.json");
      if (!existsSync(pkgFile)) continue;
      const pkg = JSON.parse(readFileSync(pkgFile, "utf8"));
      const rel = relative(root, dir);
      if (!pkg.scripts?.bench) continue;
      if (filters.length && !filters.some((f) => rel.includes(f))) continue;
      out.push({ dir, rel, name: pkg.name });
    }
  }
  return out;
}

function run(ws) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn("npm", ["run", "--silent", "bench"], { cwd: ws.dir, stdio: ["ignore", "pipe", "inherit"] });
    const results = [];
    let buffered = "";
    child.stdout.on("data", (chunk) => {
      process.stdout.write(chunk);
      buffered += chunk;
      let nl = buffered.indexOf("\n");
      while (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.startsWith("BENCH_JSON ")) {
          try {
            results.push(JSON.parse(line.slice("BENCH_JSON ".length)));
          } catch (err) {
            console.error(`unparsable BENCH_JSON from ${ws.rel}: ${err.message}`);
          }
        }
        nl = buffered.indexOf("\n");
      }
    });
    child.on("close", (code) => resolve({ ...ws, code, results, seconds: (Date.now() - started) / 1000 }));
  });
}

// A BENCH_JSON object is free-form; we render its scalar fields, and pull out `ratio*` fields into the summary.
function rows(obj, prefix = "") {
  const out = [];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) out.push(...rows(v, key));
    else out.push([key, Array.isArray(v) ? JSON.stringify(v) : v]);
  }
  return out;
}
const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v));

const runs = [];
for (const ws of workspacesWithBench()) {
  console.log(`\n=== bench: ${ws.rel}`);
  runs.push(await run(ws));
}

const date = new Date().toISOString();
const cpu = cpus();
let md = `# hecate benchmark report\n\nGenerated ${date} by \`npm run bench\`. Every ratio is measured in the same run as its baseline.\n\n`;
md += `Machine: ${cpu.length} x ${cpu[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}, Node ${process.version}\n\n`;
// Summary: numeric fields whose own name starts with `ratio` (not goals), and failure counters that must be 0.
const leaf = (k) => k.split(".").pop();
const isRatio = (k, v) => typeof v === "number" && /^ratio/i.test(leaf(k)) && !/goal$/i.test(leaf(k));
const isFailureCount = (k, v) =>
  typeof v === "number" &&
  /^(violations|lifecycle_violations|errors|failures|throughput_failures|non2xx|proxy_errors)$/i.test(leaf(k));
const summary = (pick) => {
  let out = "| workspace | bench | metric | value |\n| --- | --- | --- | --- |\n";
  for (const r of runs)
    for (const res of r.results)
      for (const [k, v] of rows(res)) if (pick(k, v)) out += `| ${r.rel} | ${res.bench ?? ""} | ${k} | ${fmt(v)} |\n`;
  return out;
};
md += `## Ratios against baselines (1.0 = as fast as the baseline)\n\n${summary(isRatio)}\n`;
// Figures with a goal of their own that are not ratios: boot time and memory per plugin against their N.
const isKeyFigure = (k, v) =>
  typeof v === "number" &&
  /^(boot_\d+_plugins_ms|rss_mib_per_idle_plugin_\d+|rss_mib_per_plugin_after_boot_\d+|floor_rss_mib_per_idle_empty_worker_\d+|host_cpu_ms_per_plugin_boot_\d+)$/.test(
    leaf(k),
  );
md += `## Boot and memory (N plugins; lower is better)\n\n${summary(isKeyFigure)}\n`;
md += `## Failure counters (every one must be 0)\n\n${summary(isFailureCount)}`;
md += "\n## All measurements\n";
for (const r of runs) {
  md += `\n### ${r.rel} (${r.name}) — exit ${r.code}, ${r.seconds.toFixed(0)} s\n\n`;
  if (r.results.length === 0) md += "No BENCH_JSON line printed.\n";
  for (const res of r.results) {
    md += "| metric | value |\n| --- | --- |\n";
    for (const [k, v] of rows(res)) md += `| ${k} | ${fmt(v)} |\n`;
    md += "\n";
  }
}
mkdirSync(join(root, "bench-results"), { recursive: true });
writeFileSync(join(root, "bench-results", "latest.md"), md);
console.log(`\nreport written to bench-results/latest.md`);
process.exit(runs.some((r) => r.code !== 0) ? 1 : 0);
