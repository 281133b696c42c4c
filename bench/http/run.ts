/**
 * The HTTP load benchmark: `npx -y pnpm@10 bench:http` from the repository root.
 *
 * For each server (strata, effect, fastify, hono, node) it first checks every answer of the workloads
 * it takes part in (`participants` in checks.ts) and the request log; a server that answers wrong is
 * reported and left out. Then, per round, workload and server, it starts the server alone in a fresh
 * process, warms it up, loads it with autocannon from this process, reads its RSS and stops it. It
 * prints a table and writes bench/results/http.json.
 *
 * Before any server starts it makes the fixtures (fixtures.ts): a temporary directory with the 64 KiB
 * file of the `static` workload, given to the servers in BENCH_STATIC_ROOT and removed at exit, and the
 * JWTs of `session+jwt`.
 *
 * The machine has two cores: one for the server, one for autocannon here. The exit code is non-zero
 * only when a server fails to start or answers wrong, never because of a figure.
 *
 * Settings (environment): BENCH_DURATION seconds per cell (5), BENCH_WARMUP seconds before it (1),
 * BENCH_ROUNDS (1; medians when more), BENCH_CONNECTIONS (50), BENCH_SERVERS and BENCH_WORKLOADS
 * (comma-separated subsets), BENCH_MAX_BACKGROUND (0.25: a cell during which other processes used
 * more cores than this is run again, BENCH_RETRIES times at most (2), and the quietest run kept).
 */
import autocannon from "autocannon"
import { mkdirSync, writeFileSync } from "node:fs"
import { createServer } from "node:http"
import { cpus, totalmem } from "node:os"
import { fileURLToPath } from "node:url"
import {
  type Fixtures,
  type LoadRequest,
  loadFor,
  participants,
  takesPart,
  verify,
  verifyLogs,
  type WorkloadName,
  workloadNames
} from "./checks.ts"
import {
  killCurrentNow,
  machineBusySeconds,
  processCpuSeconds,
  rssMiB,
  type Server,
  type ServerName,
  serverNames,
  start,
  stop
} from "./child.ts"
import { makeStaticFixture, makeTokens } from "./fixtures.ts"
import { HOST } from "./shared.ts"
import { type Sample, summarize, table } from "./report.ts"

const numberSetting = (name: string, fallback: number, kind: "positive" | "integer" | "count"): number => {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return fallback
  const value = Number(raw)
  // positive: any number > 0; integer: 1, 2, …; count: 0, 1, 2, …
  const ok =
    Number.isFinite(value) &&
    (kind === "positive" ? value > 0 : Number.isInteger(value) && value >= (kind === "count" ? 0 : 1))
  if (!ok) throw new Error(`${name} must be a ${kind} number, not ${JSON.stringify(raw)}`)
  return value
}

const subset = <T extends string>(name: string, all: ReadonlyArray<T>): ReadonlyArray<T> => {
  const raw = process.env[name]
  if (raw === undefined || raw.trim() === "") return all
  const wanted = raw.split(",").map((s) => s.trim())
  const unknown = wanted.filter((w) => !all.includes(w as T))
  if (unknown.length > 0) throw new Error(`${name}: unknown ${unknown.join(", ")}; known: ${all.join(", ")}`)
  // Keep the canonical order, whatever order they were given in.
  return all.filter((a) => wanted.includes(a))
}

const config = (() => {
  try {
    return {
      duration: numberSetting("BENCH_DURATION", 5, "positive"),
      warmup: numberSetting("BENCH_WARMUP", 1, "positive"),
      rounds: numberSetting("BENCH_ROUNDS", 1, "integer"),
      connections: numberSetting("BENCH_CONNECTIONS", 50, "integer"),
      maxBackground: numberSetting("BENCH_MAX_BACKGROUND", 0.25, "positive"),
      retries: numberSetting("BENCH_RETRIES", 2, "count"),
      servers: subset("BENCH_SERVERS", serverNames),
      workloads: subset("BENCH_WORKLOADS", workloadNames)
    }
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error))
    process.exit(2)
  }
})()

const fixtures: Fixtures = { tokens: makeTokens(), static: makeStaticFixture() }
// Every server is started with this process's environment.
process.env["BENCH_STATIC_ROOT"] = fixtures.static.root

// However things go, no server outlives the runner: a signal or an exit kills the current one by
// its pid, and a watchdog ends a run that takes far longer than its settings allow. The fixtures'
// directory goes with it.
process.on("exit", () => {
  killCurrentNow()
  fixtures.static.remove()
})
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killCurrentNow()
    process.exit(130)
  })
}
const cellBudgetS = config.warmup + config.duration + 60
const cellCount = config.workloads.reduce(
  (n, w) => n + config.servers.filter((s) => takesPart(s, w)).length,
  0
)
const budgetS =
  60 + config.servers.length * 60 + config.rounds * cellCount * cellBudgetS * (1 + config.retries)
setTimeout(() => {
  console.error(`bench:http: still running after ${budgetS} s; giving up`)
  killCurrentNow()
  process.exit(1)
}, budgetS * 1000).unref()

const load = async (server: Server, req: LoadRequest, duration: number) => {
  const result = await autocannon({
    url: `${server.url}${req.path}`,
    method: req.method,
    headers: req.headers,
    ...(req.body === undefined ? {} : { body: req.body }),
    connections: config.connections,
    duration,
    timeout: 10
  })
  return result
}

const log = (text: string) => process.stderr.write(`${text}\n`)

/** Servers left out, with why. */
const failed = new Map<ServerName, ReadonlyArray<string>>()

/** Checks every answer of a server and its request log, in a process of its own. */
const check = async (name: ServerName): Promise<void> => {
  try {
    const server = await start(name, { logToStderr: true })
    const { failures, expectedLogs } = await verify(
      server.url,
      workloadNames.filter((w) => takesPart(name, w)),
      fixtures
    )
    await stop()
    const all = [...failures, ...(failures.length === 0 ? verifyLogs(server.stderr(), expectedLogs) : [])]
    if (all.length > 0) failed.set(name, all)
  } catch (error) {
    await stop()
    failed.set(name, [error instanceof Error ? error.message : String(error)])
  }
}

/** One cell: a fresh server, its answers re-checked, warm-up, the measured run, its RSS. */
const measureOnce = async (name: ServerName, workload: WorkloadName): Promise<Sample | undefined> => {
  try {
    const server = await start(name, { logToStderr: false })
    const { failures } = await verify(server.url, [workload], fixtures)
    if (failures.length > 0) {
      failed.set(name, failures)
      return undefined
    }
    const req = await loadFor(server.url, workload, fixtures)
    // The warm-up lets V8 optimize the hot paths and the server grow its pools, as in production.
    await load(server, req, config.warmup)
    // CPU accounting around the measured run: the server's share, this process's (autocannon) and
    // the rest of the machine's, which is noise from other processes.
    const wall0 = performance.now()
    const busy0 = machineBusySeconds()
    const server0 = processCpuSeconds(server.pid)
    const runner0 = process.cpuUsage()
    const result = await load(server, req, config.duration)
    const wallS = (performance.now() - wall0) / 1000
    const runnerUsage = process.cpuUsage(runner0)
    const runnerS = (runnerUsage.user + runnerUsage.system) / 1e6
    const busy1 = machineBusySeconds()
    const server1 = processCpuSeconds(server.pid)
    const serverS = server0 === undefined || server1 === undefined ? undefined : server1 - server0
    const busyS = busy0 === undefined || busy1 === undefined ? undefined : busy1 - busy0
    return {
      rps: result.requests.average,
      p99Ms: result.latency.p99,
      rssMiB: rssMiB(server.pid),
      errors: result.errors,
      timeouts: result.timeouts,
      non2xx: result.non2xx,
      serverCores: serverS === undefined ? undefined : serverS / wallS,
      // CPU per request is steadier than req/s on a shared machine: it does not depend on how
      // much CPU the server was given, only on what each request costs it.
      serverCpuUsPerRequest:
        serverS === undefined || result.requests.total === 0
          ? undefined
          : (serverS / result.requests.total) * 1e6,
      runnerCores: runnerS / wallS,
      backgroundCores:
        busyS === undefined || serverS === undefined
          ? undefined
          : Math.max(0, (busyS - serverS - runnerS) / wallS)
    }
  } catch (error) {
    failed.set(name, [error instanceof Error ? error.message : String(error)])
    return undefined
  } finally {
    await stop()
  }
}

const QUIET_WAIT_S = 20

/**
 * Waits (up to QUIET_WAIT_S) until other processes leave the CPU: nothing of the bench runs now, so
 * any busy core belongs to someone else, and starting now would only measure their noise.
 */
const quiet = async () => {
  const deadline = performance.now() + QUIET_WAIT_S * 1000
  while (performance.now() < deadline) {
    const busy0 = machineBusySeconds()
    const self0 = process.cpuUsage()
    await new Promise((resolve) => setTimeout(resolve, 500))
    const busy1 = machineBusySeconds()
    if (busy0 === undefined || busy1 === undefined) return
    const self = process.cpuUsage(self0)
    const others = (busy1 - busy0 - (self.user + self.system) / 1e6) / 0.5
    if (others <= config.maxBackground) return
  }
  log(`  the machine stayed busy for ${QUIET_WAIT_S} s; measuring anyway`)
}

/**
 * A cell, run again (at most BENCH_RETRIES times) while other processes kept more than
 * BENCH_MAX_BACKGROUND cores busy during it; on a two-core machine they take the CPU the server or
 * autocannon needs. The quietest run is kept, and its background load is reported.
 */
const measure = async (name: ServerName, workload: WorkloadName): Promise<Sample | undefined> => {
  let best: Sample | undefined
  for (let attempt = 0; attempt <= config.retries; attempt++) {
    await quiet()
    const sample = await measureOnce(name, workload)
    if (sample === undefined) return undefined
    if (best === undefined || (sample.backgroundCores ?? 0) < (best.backgroundCores ?? 0)) best = sample
    if ((sample.backgroundCores ?? 0) <= config.maxBackground) break
    log(`  busy machine (${sample.backgroundCores?.toFixed(2)} cores used by other processes): again`)
  }
  return best
}

/**
 * Warms autocannon itself up (its parser and client code get optimized too), against a trivial
 * server inside this process, so the first measured cell is not measured with a cold client.
 */
const warmLoadGenerator = async (seconds: number) => {
  const server = createServer((_req, res) => res.end("hello"))
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve))
  const address = server.address()
  try {
    if (address !== null && typeof address === "object") {
      await autocannon({
        url: `http://${HOST}:${address.port}/`,
        connections: config.connections,
        duration: seconds
      })
    }
  } finally {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

const main = async () => {
  const startedAt = new Date()
  log(
    `bench:http: ${config.servers.join(", ")} × ${config.workloads.join(", ")}; ` +
      `${config.warmup} s warm-up + ${config.duration} s, ${config.connections} connections, ` +
      `${config.rounds} round(s); Node ${process.version}, ${cpus().length} CPUs`
  )

  for (const name of config.servers) {
    log(`check ${name}`)
    await check(name)
    const problems = failed.get(name)
    if (problems !== undefined) log(`  ${name} answers wrong, left out:\n    ${problems.join("\n    ")}`)
  }

  await warmLoadGenerator(Math.max(2, config.warmup))

  const samples = new Map<WorkloadName, Map<ServerName, Array<Sample>>>(
    config.workloads.map((w) => [
      w,
      new Map(config.servers.filter((s) => takesPart(s, w)).map((s) => [s, []]))
    ])
  )
  for (let round = 0; round < config.rounds; round++) {
    for (const workload of config.workloads) {
      // Each round starts from another server, so none is always the first or last to run.
      const servers = config.servers.filter((s) => takesPart(s, workload))
      const order = servers.map((_, i) => servers[(i + round) % servers.length]!)
      for (const name of order) {
        if (failed.has(name)) continue
        log(`round ${round + 1}/${config.rounds} ${workload} ${name}`)
        const sample = await measure(name, workload)
        if (sample === undefined) {
          log(`  ${name} failed, left out:\n    ${failed.get(name)?.join("\n    ")}`)
          continue
        }
        samples.get(workload)!.get(name)!.push(sample)
        log(
          `  ${Math.round(sample.rps)} req/s, p99 ${sample.p99Ms} ms, RSS ${sample.rssMiB?.toFixed(1)} MiB, ` +
            `server CPU ${sample.serverCpuUsPerRequest?.toFixed(1)} µs/request; ` +
            `cores: server ${sample.serverCores?.toFixed(2)}, autocannon ${sample.runnerCores.toFixed(2)}, ` +
            `others ${sample.backgroundCores?.toFixed(2)}`
        )
      }
    }
  }

  // A server that failed part-way is left out of every workload, so no table mixes it in.
  for (const byServer of samples.values()) for (const name of failed.keys()) byServer.delete(name)
  const cells = summarize(samples)
  console.log(`\n${table(cells, config.rounds)}`)
  for (const [name, problems] of failed) console.log(`\n${name}: not benchmarked\n  ${problems.join("\n  ")}`)

  const out = fileURLToPath(new URL("../results/http.json", import.meta.url))
  mkdirSync(fileURLToPath(new URL("../results/", import.meta.url)), { recursive: true })
  writeFileSync(
    out,
    JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        settings: {
          durationS: config.duration,
          warmupS: config.warmup,
          rounds: config.rounds,
          connections: config.connections,
          maxBackgroundCores: config.maxBackground,
          retries: config.retries
        },
        participants: Object.fromEntries(config.workloads.map((w) => [w, participants[w]])),
        machine: {
          node: process.version,
          cpus: cpus().length,
          cpuModel: cpus()[0]?.model,
          memoryMiB: Math.round(totalmem() / 2 ** 20)
        },
        cells,
        failed: Object.fromEntries(failed)
      },
      null,
      2
    ) + "\n"
  )
  console.log(`\nresults: ${out}`)
  process.exitCode = failed.size > 0 ? 1 : 0
}

main().catch(async (error: unknown) => {
  console.error(error)
  await stop()
  process.exitCode = 1
})
