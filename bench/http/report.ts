/**
 * Turning measurements into the printed table and the JSON file.
 */
import type { ServerName } from "./child.ts"
import type { WorkloadName } from "./checks.ts"

/** One load run against one server. */
export interface Sample {
  readonly rps: number
  readonly p99Ms: number
  readonly rssMiB: number | undefined
  readonly errors: number
  readonly timeouts: number
  readonly non2xx: number
  /** Cores in use during the run: the server's, this process's (autocannon) and everything else's. */
  readonly serverCores: number | undefined
  /** Server CPU time per completed request, in microseconds. */
  readonly serverCpuUsPerRequest: number | undefined
  readonly runnerCores: number
  readonly backgroundCores: number | undefined
}

/** One workload × server cell: each round's sample and their medians. */
export interface Cell {
  readonly workload: WorkloadName
  readonly server: ServerName
  readonly samples: ReadonlyArray<Sample>
  readonly median: {
    readonly rps: number
    readonly p99Ms: number
    readonly rssMiB: number | undefined
    readonly serverCores: number | undefined
    readonly serverCpuUsPerRequest: number | undefined
    readonly backgroundCores: number | undefined
  }
  /** Errors, timeouts and non-2xx answers summed over the rounds; all should be 0. */
  readonly problems: number
  /**
   * Requests per second relative to the same workload on Fastify, node:http, and (for strata)
   * effect; `effectCpu`: strata's server CPU per request over effect's (below 1: strata is cheaper).
   */
  readonly ratio: {
    readonly fastify?: number
    readonly node?: number
    readonly effect?: number
    readonly effectCpu?: number
  }
}

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = values.toSorted((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** The median of the values that were measured; undefined when none was (no /proc). */
const medianOf = (values: ReadonlyArray<number | undefined>): number | undefined => {
  const known = values.filter((v): v is number => v !== undefined)
  return known.length === 0 ? undefined : median(known)
}

/** Cells with their medians and ratios, from the samples gathered per workload and server. */
export const summarize = (
  samples: ReadonlyMap<WorkloadName, ReadonlyMap<ServerName, ReadonlyArray<Sample>>>
): ReadonlyArray<Cell> => {
  const cells: Array<Cell> = []
  for (const [workload, byServer] of samples) {
    const rpsOf = (server: ServerName): number | undefined => {
      const s = byServer.get(server)
      return s === undefined || s.length === 0 ? undefined : median(s.map((x) => x.rps))
    }
    const cpuOf = (server: ServerName): number | undefined =>
      medianOf((byServer.get(server) ?? []).map((x) => x.serverCpuUsPerRequest))
    for (const [server, list] of byServer) {
      if (list.length === 0) continue
      const rps = median(list.map((s) => s.rps))
      const relative = (to: ServerName) => {
        const base = rpsOf(to)
        return base === undefined || base === 0 ? undefined : rps / base
      }
      const fastify = relative("fastify")
      const node = relative("node")
      const effect = server === "strata" ? relative("effect") : undefined
      const cpu = medianOf(list.map((s) => s.serverCpuUsPerRequest))
      const effectCpuBase = server === "strata" ? cpuOf("effect") : undefined
      const effectCpu =
        cpu === undefined || effectCpuBase === undefined || effectCpuBase === 0
          ? undefined
          : cpu / effectCpuBase
      cells.push({
        workload,
        server,
        samples: list,
        median: {
          rps,
          p99Ms: median(list.map((s) => s.p99Ms)),
          rssMiB: medianOf(list.map((s) => s.rssMiB)),
          serverCores: medianOf(list.map((s) => s.serverCores)),
          serverCpuUsPerRequest: cpu,
          backgroundCores: medianOf(list.map((s) => s.backgroundCores))
        },
        problems: list.reduce((n, s) => n + s.errors + s.timeouts + s.non2xx, 0),
        ratio: {
          ...(fastify === undefined ? {} : { fastify }),
          ...(node === undefined ? {} : { node }),
          ...(effect === undefined ? {} : { effect }),
          ...(effectCpu === undefined ? {} : { effectCpu })
        }
      })
    }
  }
  return cells
}

const pad = (text: string, width: number, right: boolean) =>
  right ? text.padStart(width) : text.padEnd(width)

const fixed = (n: number | undefined, digits: number) => (n === undefined ? "-" : n.toFixed(digits))

/** The table printed at the end: one block per workload, one row per server. */
export const table = (cells: ReadonlyArray<Cell>, rounds: number): string => {
  const head = [
    "workload",
    "server",
    "req/s",
    "p99 ms",
    "RSS MiB",
    "×fastify",
    "×node",
    "srv CPU",
    "µs/req",
    "bg CPU",
    "problems"
  ]
  const rows: Array<Array<string>> = []
  const notes: Array<string> = []
  let lastWorkload: string | undefined
  for (const cell of cells) {
    rows.push([
      cell.workload === lastWorkload ? "" : cell.workload,
      cell.server,
      Math.round(cell.median.rps).toLocaleString("en-US"),
      fixed(cell.median.p99Ms, 0),
      fixed(cell.median.rssMiB, 1),
      fixed(cell.ratio.fastify, 2),
      fixed(cell.ratio.node, 2),
      fixed(cell.median.serverCores, 2),
      fixed(cell.median.serverCpuUsPerRequest, 1),
      fixed(cell.median.backgroundCores, 2),
      String(cell.problems)
    ])
    lastWorkload = cell.workload
    if (cell.ratio.effect !== undefined) {
      notes.push(
        `${cell.workload}: strata/effect = ${cell.ratio.effect.toFixed(2)} in req/s` +
          (cell.ratio.effectCpu === undefined
            ? ""
            : `, ${cell.ratio.effectCpu.toFixed(2)} in server CPU per request`)
      )
    }
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cols: ReadonlyArray<string>) => cols.map((c, i) => pad(c, widths[i]!, i >= 2)).join("  ")
  const out = [line(head), widths.map((w) => "-".repeat(w)).join("  ")]
  rows.forEach((row, i) => {
    if (i > 0 && row[0] !== "") out.push("")
    out.push(line(row))
  })
  out.push("", ...notes)
  out.push(
    "",
    `req/s and p99: ${rounds > 1 ? `median of ${rounds} rounds` : "one round"}; RSS: the server after its run;` +
      " ×fastify, ×node: req/s relative to them (higher is faster);\n" +
      "srv CPU: cores the server used during the run (near 1.00: the server is the bottleneck);" +
      " µs/req: server CPU time per request (steadier than req/s when the machine is shared);\n" +
      " bg CPU: cores other processes used (noise); problems: errors + timeouts + non-2xx."
  )
  return out.join("\n")
}
