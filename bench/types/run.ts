/**
 * Type-check scale benchmark: how long TypeScript takes, and how many types and instantiations it
 * makes, to check an app of N routes behind 8 request-scoped middleware, on Strata and on Effect 4's
 * HttpRouter alone (the baseline). The generated apps must compile without error (no TS2589); one
 * broken app per probe must fail with exactly the expected error, showing the checks still work at
 * scale. Timings are reported, never judged.
 *
 *   pnpm bench:types                                  # 200, 500, 1000 routes, 3 runs each
 *   pnpm bench:types --sizes 100,2000 --runs 5 --timeout 600
 *   BENCH_TYPES_SIZES=200,1000 pnpm bench:types
 *
 * Writes the apps to bench/types/generated/ and the results to bench/results/types.json.
 */
import { cpus, loadavg, totalmem } from "node:os"
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { generate, supports, type Expected, type Generated, type Probe, type Variant } from "./generate.ts"
import { findCompiler, runTsc, type Diagnostic, type Run } from "./tsc.ts"

const here = dirname(fileURLToPath(import.meta.url))
const repoRoot = resolve(here, "..", "..")
const baseConfig = join(repoRoot, "tsconfig.base.json")
const outDir = join(here, "generated")
const resultsFile = join(repoRoot, "bench", "results", "types.json")

const variants: ReadonlyArray<Variant> = ["raw", "strata"]
const probes: ReadonlyArray<Probe> = ["missing-service", "unprotected-route"]

const { values } = parseArgs({
  args: process.argv.slice(2).filter((arg) => arg !== "--"),
  options: {
    sizes: { type: "string", default: process.env["BENCH_TYPES_SIZES"] ?? "200,500,1000" },
    runs: { type: "string", default: process.env["BENCH_TYPES_RUNS"] ?? "3" },
    groups: { type: "string", default: "20" },
    "probe-routes": { type: "string", default: "1000" },
    timeout: { type: "string", default: process.env["BENCH_TYPES_TIMEOUT"] ?? "300" },
    help: { type: "boolean", default: false }
  }
})

if (values.help) {
  console.log(
    "Usage: pnpm bench:types [--sizes 200,500,1000] [--runs 3] [--groups 20] [--probe-routes 1000] [--timeout 300]"
  )
  process.exit(0)
}

const positive = (name: string, text: string): number => {
  const n = Number(text)
  if (!Number.isInteger(n) || n <= 0) {
    console.error(`--${name} must be a positive integer, got ${JSON.stringify(text)}`)
    process.exit(2)
  }
  return n
}

const sizes = [...new Set(values.sizes.split(",").map((s) => positive("sizes", s.trim())))].toSorted(
  (a, b) => a - b
)
const runs = positive("runs", values.runs)
const groups = positive("groups", values.groups)
const probeRoutes = positive("probe-routes", values["probe-routes"])
const timeoutS = positive("timeout", values.timeout)
if (groups < 2) {
  console.error("--groups must be at least 2: one public group and the API groups")
  process.exit(2)
}
if (sizes.some((n) => n < groups)) {
  console.error(`every size must be at least the number of groups (${groups})`)
  process.exit(2)
}

const median = (xs: ReadonlyArray<number>): number => {
  const sorted = xs.toSorted((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const versionOf = (pkg: string): string => {
  try {
    const require = createRequire(join(here, "..", "package.json"))
    return (JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), "utf8")) as { version: string })
      .version
  } catch {
    return "unknown"
  }
}

const short = (d: Diagnostic): string => {
  const first = d.message.split("\n")[0] ?? ""
  return `${d.location === "" ? "" : `${d.location}: `}TS${d.code} ${first.length > 300 ? `${first.slice(0, 300)}…` : first}`
}

interface Measured {
  readonly variant: Variant
  readonly routes: number
  readonly app: Generated
  readonly runs: Array<Run>
}

interface Summary {
  readonly variant: Variant
  readonly routes: number
  readonly files: number
  readonly wallS: number
  readonly wallMinS: number
  readonly checkS: number
  readonly totalS: number
  readonly instantiations: number
  readonly instantiationsRange: readonly [number, number]
  readonly types: number
  readonly memoryMB: number
  readonly ts2589: boolean
  readonly errors: ReadonlyArray<string>
  readonly timedOut: boolean
  /** Exit codes other than 0, if any run had one. */
  readonly exitCodes: ReadonlyArray<number | null>
  readonly ok: boolean
  readonly runs: ReadonlyArray<{
    readonly wallS: number
    readonly checkS: number | undefined
    readonly totalS: number | undefined
    readonly instantiations: number | undefined
    readonly types: number | undefined
    readonly memoryMB: number | undefined
  }>
}

const summarize = (m: Measured): Summary => {
  const complete = m.runs.flatMap((r) => (r.stats === undefined ? [] : [r.stats]))
  const errors = [...new Set(m.runs.flatMap((r) => r.diagnostics.map(short)))]
  const timedOut = m.runs.some((r) => r.timedOut)
  const ts2589 = m.runs.some((r) => r.ts2589)
  const inst = complete.map((s) => s.instantiations)
  const exitCodes = [...new Set(m.runs.map((r) => r.exitCode).filter((c) => c !== 0))]
  return {
    variant: m.variant,
    routes: m.routes,
    files: m.app.files,
    wallS: median(m.runs.map((r) => r.wallS)),
    wallMinS: Math.min(...m.runs.map((r) => r.wallS)),
    checkS: complete.length === 0 ? NaN : median(complete.map((s) => s.checkS)),
    totalS: complete.length === 0 ? NaN : median(complete.map((s) => s.totalS)),
    instantiations: inst.length === 0 ? NaN : median(inst),
    instantiationsRange: inst.length === 0 ? [NaN, NaN] : [Math.min(...inst), Math.max(...inst)],
    types: complete.length === 0 ? NaN : median(complete.map((s) => s.types)),
    memoryMB: complete.length === 0 ? NaN : median(complete.map((s) => s.memoryMB)),
    ts2589,
    errors,
    timedOut,
    exitCodes,
    ok:
      !timedOut &&
      !ts2589 &&
      errors.length === 0 &&
      exitCodes.length === 0 &&
      complete.length === m.runs.length,
    runs: m.runs.map((r) => ({
      wallS: r.wallS,
      checkS: r.stats?.checkS,
      totalS: r.stats?.totalS,
      instantiations: r.stats?.instantiations,
      types: r.stats?.types,
      memoryMB: r.stats?.memoryMB
    }))
  }
}

interface ProbeResult {
  readonly variant: Variant
  readonly probe: Probe
  readonly routes: number
  readonly expected: Expected
  readonly wallS: number
  readonly checkS: number | undefined
  readonly instantiations: number | undefined
  /** Wall time (median) against the same app without the probe. */
  readonly vsCleanWall: number | undefined
  readonly vsCleanInstantiations: number | undefined
  readonly errors: ReadonlyArray<string>
  /** Where the error says what the probe expects, cut around it. */
  readonly evidence: ReadonlyArray<string>
  readonly ok: boolean
  readonly problem: string | undefined
}

const evidenceOf = (expected: Expected, run: Run): ReadonlyArray<string> =>
  expected.includes.flatMap((needle) => {
    for (const d of run.diagnostics) {
      const at = d.message.indexOf(needle)
      if (at === -1) continue
      const start = Math.max(0, at - 100)
      const end = Math.min(d.message.length, at + needle.length + 100)
      return [
        `${start > 0 ? "…" : ""}${d.message.slice(start, end).replace(/\s+/g, " ")}${end < d.message.length ? "…" : ""}`
      ]
    }
    return []
  })

const judgeProbe = (expected: Expected, run: Run): string | undefined => {
  if (run.timedOut) return `timed out after ${timeoutS}s`
  if (run.ts2589) return "TS2589 (type instantiation is excessively deep)"
  if (run.diagnostics.length !== 1) {
    return `expected exactly 1 error, got ${run.diagnostics.length}`
  }
  const [d] = run.diagnostics
  if (d!.code !== expected.code) return `expected TS${expected.code}, got TS${d!.code}`
  const missing = expected.includes.filter((s) => !d!.message.includes(s))
  if (missing.length > 0)
    return `the error does not mention ${missing.map((s) => JSON.stringify(s)).join(", ")}`
  return undefined
}

// ---------------------------------------------------------------------------------------------------

const compiler = findCompiler()
const tsc = (tsconfig: string): Run => runTsc(compiler, tsconfig, timeoutS, repoRoot)
const loadBefore = loadavg()
const effectVersion = versionOf("effect")
console.log(
  `Type-check benchmark: TypeScript ${compiler.version}, effect ${effectVersion}, Node ${process.version}, ` +
    `${cpus().length} CPUs (${cpus()[0]?.model ?? "unknown"})`
)
console.log(
  `sizes ${sizes.join(", ")} routes in ${groups} groups; ${runs} run(s) each (median); timeout ${timeoutS}s per tsc\n`
)

if (loadBefore[0]! > cpus().length / 2) {
  console.log(
    `note: the machine is busy (load ${loadBefore[0]!.toFixed(1)} on ${cpus().length} CPUs); times will be noisy, ` +
      "counts (instantiations, types) are not affected\n"
  )
}

rmSync(outDir, { recursive: true, force: true })
mkdirSync(outDir, { recursive: true })

const measured: Array<Measured> = []
for (const routes of sizes) {
  for (const variant of variants) {
    const app = generate(outDir, baseConfig, { variant, routes, groups })
    measured.push({ variant, routes, app, runs: [] })
  }
}

// One untimed run first, so the first measurement does not pay for a cold file cache.
tsc(measured[0]!.app.tsconfig)

// Runs interleave the apps, so a slow spell of the machine spreads over all of them.
for (let i = 0; i < runs; i++) {
  for (const m of measured) {
    const run = tsc(m.app.tsconfig)
    m.runs.push(run)
    const s = run.stats
    console.log(
      `  run ${i + 1}/${runs} ${m.app.name.padEnd(12)} ${run.wallS.toFixed(2)}s` +
        (s === undefined ? "" : `, ${s.instantiations} instantiations`) +
        (run.timedOut ? ", TIMED OUT" : "") +
        (run.diagnostics.length > 0 ? `, ${run.diagnostics.length} error(s)` : "")
    )
  }
}

const summaries = measured.map(summarize)

const probeResults: Array<ProbeResult> = []
for (const variant of variants) {
  for (const probe of probes) {
    if (!supports(variant, probe)) continue
    const app = generate(outDir, baseConfig, { variant, routes: probeRoutes, groups, probe })
    const probeRuns = Array.from({ length: runs }, () => tsc(app.tsconfig))
    const run = probeRuns[0]!
    const clean = summaries.find((s) => s.variant === variant && s.routes === probeRoutes)
    const problem = probeRuns.map((r) => judgeProbe(app.expected!, r)).find((p) => p !== undefined)
    const wallS = median(probeRuns.map((r) => r.wallS))
    probeResults.push({
      variant,
      probe,
      routes: app.routes,
      expected: app.expected!,
      wallS,
      checkS: run.stats?.checkS,
      instantiations: run.stats?.instantiations,
      vsCleanWall: clean === undefined ? undefined : wallS / clean.wallS,
      vsCleanInstantiations:
        clean === undefined || run.stats === undefined
          ? undefined
          : run.stats.instantiations / clean.instantiations,
      errors: run.diagnostics.map(short),
      evidence: evidenceOf(app.expected!, run),
      ok: problem === undefined,
      problem
    })
    console.log(`  probe ${app.name} ${wallS.toFixed(2)}s: ${problem ?? "the expected error"}`)
  }
}

// ---------------------------------------------------------------------------------------------------
// Report

const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "—")
const fmtS = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "—")
const fmtX = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : "—")
const fmtMB = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "—")

const head = [
  "routes",
  "variant",
  "wall s",
  "min s",
  "check s",
  "instantiations",
  "types",
  "memory MB",
  "TS2589",
  "errors"
]
const rows: Array<Array<string>> = []
const ratios: Array<{
  readonly routes: number
  readonly wall: number
  readonly wallMin: number
  readonly check: number
  readonly instantiations: number
  readonly types: number
  readonly memory: number
}> = []
for (const routes of sizes) {
  const raw = summaries.find((s) => s.routes === routes && s.variant === "raw")!
  const strata = summaries.find((s) => s.routes === routes && s.variant === "strata")!
  for (const s of [raw, strata]) {
    rows.push([
      String(routes),
      s.variant,
      fmtS(s.wallS),
      fmtS(s.wallMinS),
      fmtS(s.checkS),
      fmtInt(s.instantiations) +
        (s.instantiationsRange[0] !== s.instantiationsRange[1]
          ? ` (${fmtInt(s.instantiationsRange[0])}–${fmtInt(s.instantiationsRange[1])})`
          : ""),
      fmtInt(s.types),
      fmtMB(s.memoryMB),
      s.ts2589 ? "YES" : "no",
      s.timedOut ? "timeout" : String(s.errors.length)
    ])
  }
  const ratio = {
    routes,
    wall: strata.wallS / raw.wallS,
    wallMin: strata.wallMinS / raw.wallMinS,
    check: strata.checkS / raw.checkS,
    instantiations: strata.instantiations / raw.instantiations,
    types: strata.types / raw.types,
    memory: strata.memoryMB / raw.memoryMB
  }
  ratios.push(ratio)
  rows.push([
    "",
    "strata/raw",
    fmtX(ratio.wall),
    fmtX(ratio.wallMin),
    fmtX(ratio.check),
    fmtX(ratio.instantiations),
    fmtX(ratio.types),
    fmtX(ratio.memory),
    "",
    ""
  ])
}
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
const line = (cells: ReadonlyArray<string>) =>
  cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")
console.log(`\n${line(head)}\n${widths.map((w) => "-".repeat(w)).join("  ")}`)
for (const r of rows) console.log(line(r))

// What one more route costs, from the smallest to the largest size.
const marginal =
  sizes.length < 2
    ? []
    : variants.map((variant) => {
        const lo = summaries.find((s) => s.variant === variant && s.routes === sizes[0])!
        const hi = summaries.find((s) => s.variant === variant && s.routes === sizes[sizes.length - 1])!
        const span = hi.routes - lo.routes
        return {
          variant,
          from: lo.routes,
          to: hi.routes,
          instantiationsPerRoute: (hi.instantiations - lo.instantiations) / span,
          typesPerRoute: (hi.types - lo.types) / span,
          checkMsPerRoute: ((hi.checkS - lo.checkS) * 1000) / span
        }
      })
if (marginal.length > 0) {
  console.log(`\nper extra route (${sizes[0]} → ${sizes[sizes.length - 1]} routes):`)
  for (const m of marginal) {
    console.log(
      `  ${m.variant.padEnd(7)} ${m.instantiationsPerRoute.toFixed(1)} instantiations, ` +
        `${m.typesPerRoute.toFixed(1)} types, ${m.checkMsPerRoute.toFixed(2)} ms check`
    )
  }
}

console.log("\nmust-not-compile probes:")
for (const p of probeResults) {
  console.log(
    `  ${p.variant} ${p.probe} (${p.routes} routes): ${p.ok ? "ok" : `FAILED: ${p.problem}`}, ` +
      `${p.wallS.toFixed(2)}s wall, ${fmtInt(p.instantiations ?? NaN)} instantiations` +
      (p.vsCleanWall === undefined || p.vsCleanInstantiations === undefined
        ? ""
        : ` (${fmtX(p.vsCleanWall)} and ${fmtX(p.vsCleanInstantiations)} the clean app)`)
  )
  for (const e of p.errors.slice(0, 3)) console.log(`    ${e.slice(0, 160)}${e.length > 160 ? "…" : ""}`)
  for (const e of p.evidence) console.log(`      ${e}`)
}

const failures = [
  ...summaries
    .filter((s) => !s.ok)
    .map(
      (s) =>
        `${s.variant}-${s.routes}: ${
          s.timedOut
            ? `timed out after ${timeoutS}s`
            : s.ts2589
              ? "TS2589"
              : s.errors.length > 0
                ? `${s.errors.length} error(s): ${s.errors.slice(0, 5).join("; ")}`
                : s.exitCodes.length > 0
                  ? `tsc exited with ${s.exitCodes.join(", ")}`
                  : "tsc printed no statistics"
        }`
    ),
  ...probeResults.filter((p) => !p.ok).map((p) => `probe ${p.variant} ${p.probe}: ${p.problem}`)
]
for (const m of measured) {
  for (const r of m.runs) {
    if (r.stats === undefined && !r.timedOut)
      console.error(`\n${m.app.name}: tsc output ends with\n${r.tail}`)
  }
}

mkdirSync(dirname(resultsFile), { recursive: true })
writeFileSync(
  resultsFile,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      environment: {
        typescript: compiler.version,
        effect: effectVersion,
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model,
        memoryGB: Math.round(totalmem() / 2 ** 30),
        loadAverageBefore: loadBefore,
        loadAverageAfter: loadavg()
      },
      options: { sizes, runs, groups, probeRoutes, timeoutS, middleware: 8 },
      command: "tsc --noEmit --extendedDiagnostics --pretty false -p <generated tsconfig>",
      results: summaries,
      ratios,
      marginal,
      probes: probeResults,
      failures,
      ok: failures.length === 0
    },
    null,
    2
  )}\n`
)
console.log(`\nresults: ${relative(repoRoot, resultsFile)}`)

if (failures.length > 0) {
  console.error(`\nFAILED:\n${failures.map((f) => `  ${f}`).join("\n")}`)
  process.exit(1)
}
