/**
 * The webhook dispatcher benchmark: `npx -y pnpm@10 bench:webhooks` from the repository root.
 *
 * A receiver process (receiver.ts: node:http on 127.0.0.1, 204 for every POST) takes deliveries from
 * the dispatcher in this process, which signs each one (Standard Webhooks v1, HMAC-SHA256) and records
 * every message, delivery and attempt in the outbox store, through the SSRF-guarded undici client
 * allowlisting 127.0.0.1. Per store (SQLite file in WAL mode with `synchronous = FULL`; Postgres when
 * one answers on 127.0.0.1:5432/test, tables under a per-run prefix dropped at the end) it measures:
 *
 * - send + deliver: BENCH_MESSAGES messages sent by concurrent `Outbox.send`s while the dispatcher
 *   runs; deliveries/s from the first send until the receiver has every one and the store has
 *   recorded every attempt;
 * - drain: the same number sent while no dispatcher runs, then delivered (delivery alone);
 * - latency: BENCH_RATE messages/s for BENCH_SECONDS, from `send` being called to the receiver seeing
 *   the first attempt (p50/p99), on an otherwise idle dispatcher.
 *
 * For a ratio against a ceiling measured in the same run it also POSTs the same signed requests with
 * the same client and no store at all. CPU time per delivery is printed beside each rate: on a shared
 * machine it moves less than the rates do, and the load average is printed to judge the rest. Every
 * phase is bounded in time; the figures are printed and written to bench/results/webhooks.json; the
 * exit code never depends on them.
 *
 * Settings (environment): BENCH_MESSAGES (20000), BENCH_RATE (1000), BENCH_SECONDS (3),
 * BENCH_CONCURRENCY per endpoint (128), BENCH_STORES (sqlite,postgres; also sqlite-normal: SQLite with
 * `synchronous = NORMAL`, to see what the fsync per group commit costs).
 */
import { execFileSync, fork } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import * as Catalog from "../../packages/webhooks/src/Catalog.ts"
import * as Dispatcher from "../../packages/webhooks/src/Dispatcher.ts"
import * as Endpoint from "../../packages/webhooks/src/Endpoint.ts"
import * as Outbox from "../../packages/webhooks/src/Outbox.ts"
import * as OutboxPostgres from "../../packages/webhooks/src/OutboxPostgres.ts"
import * as OutboxSqlite from "../../packages/webhooks/src/OutboxSqlite.ts"
import * as Retry from "../../packages/webhooks/src/Retry.ts"
import * as Signature from "../../packages/webhooks/src/Signature.ts"
import * as Ssrf from "../../packages/webhooks/src/Ssrf.ts"
import type { Command, Reply } from "./receiver.ts"

const setting = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? "")
  return Number.isFinite(value) && value > 0 ? value : fallback
}
const MESSAGES = Math.floor(setting("BENCH_MESSAGES", 20_000))
const RATE = setting("BENCH_RATE", 1000)
const SECONDS = setting("BENCH_SECONDS", 3)
const CONCURRENCY = Math.floor(setting("BENCH_CONCURRENCY", 128))
const STORES = (process.env["BENCH_STORES"] ?? "sqlite,postgres").split(",").map((s) => s.trim())
const PHASE_DEADLINE_MS = 90_000

const events = Catalog.make({
  "user.created": Schema.Struct({
    id: Schema.String,
    email: Schema.String,
    plan: Schema.String,
    note: Schema.String
  })
})
// About 1 KB of body per message, as in the research measurements.
const data = (i: number) => ({
  id: `u_${i}`,
  email: `user${i}@example.com`,
  plan: "pro",
  note: "x".repeat(900)
})

const now = () => performance.timeOrigin + performance.now()
const cpuSince = (start: NodeJS.CpuUsage, count: number) => {
  const used = process.cpuUsage(start)
  return Math.round((used.user + used.system) / Math.max(1, count))
}

// ---------------------------------------------------------------------------------------------------
// The receiver process
// ---------------------------------------------------------------------------------------------------

const child = fork(fileURLToPath(new URL("./receiver.ts", import.meta.url)), [], {
  stdio: ["ignore", "inherit", "inherit", "ipc"]
})
const waiting: Array<(reply: Reply) => void> = []
child.on("message", (reply: Reply) => waiting.shift()?.(reply))
const ask = (command: Command | undefined): Promise<Reply> =>
  new Promise((resolve) => {
    waiting.push(resolve)
    if (command !== undefined) child.send(command)
  })
const ready = (await ask(undefined)) as Extract<Reply, { type: "ready" }>
const receiverUrl = `http://127.0.0.1:${ready.port}/hooks`
const count = async () => ((await ask({ type: "count" })) as Extract<Reply, { type: "count" }>).count
const reset = () => ask({ type: "reset" })
const arrivals = async () =>
  ((await ask({ type: "arrivals" })) as Extract<Reply, { type: "arrivals" }>).arrivals

// The receiver is on loopback: allowed where the endpoint is registered and where it is dialled.
const allow = ["127.0.0.1/32"]
const client = Ssrf.layerHttpClient({ allow, agent: { connections: CONCURRENCY } })

// ---------------------------------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------------------------------

type StoreLayer = Layer.Layer<Outbox.Store | Endpoint.Endpoints, unknown>

interface Throughput {
  readonly deliveriesPerSecond: number
  readonly sendsPerSecond: number
  readonly seconds: number
  /** CPU of this process (user + system, all threads) per delivery, sending included when it ran. */
  readonly cpuMicrosPerDelivery: number
  readonly complete: boolean
}

const dispatcherLayer = Dispatcher.layer({ policy: Retry.make({ timeout: "15 seconds" }), batchSize: 1024 })

const waitUntil = (done: () => Promise<boolean>, deadline: number) =>
  Effect.promise(async () => {
    while (now() < deadline) {
      if (await done()) return true
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    return false
  })

const allRecorded = Effect.map(Outbox.deliveries({ state: "pending", limit: 1 }), (left) => left.length === 0)

const sendAll = (total: number) =>
  Effect.forEach(
    Array.from({ length: total }, (_, i) => i),
    (i) => Outbox.send(events, "user.created", data(i)),
    { concurrency: 512, discard: true }
  )

const createEndpoint = Effect.flatMap(Endpoint.Endpoints, (e) =>
  e.create({ url: receiverUrl, concurrency: CONCURRENCY })
)

/** Waits for every delivery at the receiver and every attempt recorded; measures from `start`. */
const finish = (start: number, cpu: NodeJS.CpuUsage, sendsPerSecond: number) =>
  Effect.gen(function* () {
    const deadline = start + PHASE_DEADLINE_MS
    const received = yield* waitUntil(async () => (await count()) >= MESSAGES, deadline)
    let recorded = false
    if (received) {
      while (!recorded && now() < deadline) {
        recorded = yield* allRecorded
        if (!recorded) yield* Effect.sleep("5 millis")
      }
    }
    const seconds = (now() - start) / 1000
    const delivered = yield* Effect.promise(count)
    return {
      deliveriesPerSecond: Math.round(delivered / seconds),
      sendsPerSecond,
      seconds: Number(seconds.toFixed(2)),
      cpuMicrosPerDelivery: cpuSince(cpu, delivered),
      complete: received && recorded
    } satisfies Throughput
  })

/** Sends while the dispatcher runs. */
const throughput = (store: StoreLayer) =>
  Effect.gen(function* () {
    yield* Effect.promise(reset)
    yield* createEndpoint
    const start = now()
    const cpu = process.cpuUsage()
    yield* sendAll(MESSAGES)
    return yield* finish(start, cpu, Math.round(MESSAGES / ((now() - start) / 1000)))
  }).pipe(Effect.provide(dispatcherLayer.pipe(Layer.provideMerge(store), Layer.provide(client))))

/** Sends with no dispatcher, then starts one: delivery alone. */
const drain = (store: StoreLayer) =>
  Effect.gen(function* () {
    yield* Effect.promise(reset)
    yield* createEndpoint
    const before = now()
    yield* sendAll(MESSAGES)
    const sendsPerSecond = Math.round(MESSAGES / ((now() - before) / 1000))
    const start = now()
    const cpu = process.cpuUsage()
    return yield* finish(start, cpu, sendsPerSecond).pipe(
      Effect.provide(Layer.fresh(dispatcherLayer).pipe(Layer.provide(client)))
    )
  }).pipe(Effect.provide(store))

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

/** A steady rate of sends; latency from calling `send` to the receiver seeing the first attempt. */
const latency = (store: StoreLayer) =>
  Effect.gen(function* () {
    yield* Effect.promise(reset)
    yield* createEndpoint
    const sentAt = new Map<string, number>()
    const total = Math.round(RATE * SECONDS)
    const perTick = Math.max(1, Math.round(RATE / 100))
    const start = now()
    for (let i = 0; i < total; i += perTick) {
      const wait = start + (i / RATE) * 1000 - now()
      if (wait > 0) yield* Effect.sleep(`${Math.round(wait)} millis`)
      yield* Effect.forEach(
        Array.from({ length: Math.min(perTick, total - i) }, (_, k) => i + k),
        (n) => {
          const at = now()
          return Effect.map(Outbox.send(events, "user.created", data(n)), (sent) => sentAt.set(sent.id, at))
        },
        { concurrency: "unbounded", discard: true }
      )
    }
    yield* waitUntil(async () => (await count()) >= total, now() + 30_000)
    const first = new Map<string, number>()
    for (const [id, at] of yield* Effect.promise(arrivals)) if (!first.has(id)) first.set(id, at)
    const latencies = [...sentAt]
      .flatMap(([id, at]) => {
        const arrived = first.get(id)
        return arrived === undefined ? [] : [arrived - at]
      })
      .toSorted((a, b) => a - b)
    return {
      rate: RATE,
      messages: total,
      p50Ms: Number(percentile(latencies, 50).toFixed(1)),
      p99Ms: Number(percentile(latencies, 99).toFixed(1)),
      maxMs: Number((latencies.at(-1) ?? Number.NaN).toFixed(1)),
      measured: latencies.length
    }
  }).pipe(Effect.provide(dispatcherLayer.pipe(Layer.provideMerge(store), Layer.provide(client))))

/**
 * The same signed POSTs with the same client and no store: the ceiling of the delivery path. Bodies
 * are encoded beforehand, as the dispatcher's are (at `send`); each request is signed, as each
 * attempt is; no client span, as in the dispatcher.
 */
const ceiling = (total: number) =>
  Effect.gen(function* () {
    yield* Effect.promise(reset)
    const http = yield* HttpClient.HttpClient
    const secret = Signature.generateV1()
    const payloads = Array.from({ length: total }, (_, i) => Catalog.encode(events, "user.created", data(i)))
    const start = now()
    const cpu = process.cpuUsage()
    yield* Effect.forEach(
      payloads,
      (payload, i) => {
        const headers = Signature.sign(
          { id: `msg_${i}`, timestamp: Math.floor(Date.now() / 1000), payload },
          [secret]
        )
        return http.execute(
          HttpClientRequest.post(receiverUrl).pipe(
            HttpClientRequest.setHeaders(headers),
            HttpClientRequest.bodyText(payload, "application/json")
          )
        )
      },
      { concurrency: CONCURRENCY, discard: true }
    ).pipe(Effect.provideService(HttpClient.TracerDisabledWhen, () => true))
    return {
      requestsPerSecond: Math.round(total / ((now() - start) / 1000)),
      cpuMicrosPerRequest: cpuSince(cpu, total)
    }
  }).pipe(Effect.provide(client))

// ---------------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), "strata-bench-webhooks-"))
let files = 0
const sqlite = (): StoreLayer =>
  OutboxSqlite.layer({ filename: join(dir, `outbox-${files++}.db`), allowEndpoints: allow })
// Durable across process crashes but not power loss: what the fsync per group commit costs.
const sqliteNormal = (): StoreLayer =>
  OutboxSqlite.layer({
    filename: join(dir, `outbox-${files++}.db`),
    synchronous: "NORMAL",
    allowEndpoints: allow
  })

const pgConfig = { host: "127.0.0.1", port: 5432, database: "test", username: "postgres" } as const
const pgPrefix = `bench_wh_${process.pid}_`
let prefixes = 0
const postgres = (): StoreLayer =>
  OutboxPostgres.layerPool(
    { ...pgConfig, maxConnections: 16 },
    {
      tablePrefix: `${pgPrefix}${prefixes++}_`,
      allowEndpoints: allow
    }
  )
const pgAnswers = await Effect.runPromise(
  Effect.flatMap(Endpoint.Endpoints, (e) => e.list).pipe(
    Effect.provide(postgres()),
    Effect.timeout("5 seconds"),
    Effect.as(true),
    Effect.orElseSucceed(() => false)
  )
)

const psql = (command: string) =>
  execFileSync(
    "psql",
    ["-h", pgConfig.host, "-U", pgConfig.username, "-d", pgConfig.database, "-Atqc", command],
    {
      encoding: "utf8"
    }
  )
const dropPgTables = () => {
  try {
    const tables = psql(`SELECT tablename FROM pg_tables WHERE starts_with(tablename, '${pgPrefix}')`)
      .split("\n")
      .filter((table) => table !== "")
    if (tables.length > 0) psql(`DROP TABLE ${tables.map((table) => `"${table}"`).join(", ")}`)
  } catch (error) {
    process.stderr.write(`could not drop the benchmark's Postgres tables (${pgPrefix}*): ${String(error)}\n`)
  }
}

// ---------------------------------------------------------------------------------------------------
// Run
// ---------------------------------------------------------------------------------------------------

const results: Record<string, unknown> = {
  startedAt: new Date().toISOString(),
  settings: { messages: MESSAGES, rate: RATE, seconds: SECONDS, concurrency: CONCURRENCY },
  machine: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "unknown" },
  loadAverageAtStart: loadavg()
}
const line = (label: string, value: string) => process.stdout.write(`${label.padEnd(44)} ${value}\n`)
const loadText = (load: ReadonlyArray<number>) => load.map((x) => x.toFixed(1)).join(" ")

try {
  // Warm-up (JIT, connections), not reported.
  await Effect.runPromise(Effect.asVoid(ceiling(Math.min(MESSAGES, 5000))))
  const top = await Effect.runPromise(ceiling(MESSAGES))
  results["ceiling"] = top
  line(
    "ceiling: signed POSTs, no store",
    `${top.requestsPerSecond} req/s, ${top.cpuMicrosPerRequest} µs CPU/request`
  )
  for (const name of STORES) {
    if (name === "postgres" && !pgAnswers) {
      line("postgres", "skipped: nothing answers on 127.0.0.1:5432/test")
      continue
    }
    const make = name === "postgres" ? postgres : name === "sqlite-normal" ? sqliteNormal : sqlite
    const both = await Effect.runPromise(throughput(make()))
    const drained = await Effect.runPromise(drain(make()))
    const late = await Effect.runPromise(latency(make()))
    results[name] = { sendAndDeliver: both, drain: drained, latency: late }
    const flag = (t: Throughput) => (t.complete ? "" : "  (INCOMPLETE within the deadline)")
    const ratio = (t: Throughput) =>
      `${((t.deliveriesPerSecond / top.requestsPerSecond) * 100).toFixed(0)}% of ceiling`
    line(
      `${name}: send + deliver ${MESSAGES}`,
      `${both.deliveriesPerSecond} deliveries/s (${ratio(both)}), ${both.cpuMicrosPerDelivery} µs CPU/delivery incl. send; sends ${both.sendsPerSecond}/s${flag(both)}`
    )
    line(
      `${name}: drain ${MESSAGES} queued`,
      `${drained.deliveriesPerSecond} deliveries/s (${ratio(drained)}), ${drained.cpuMicrosPerDelivery} µs CPU/delivery; queued at ${drained.sendsPerSecond} sends/s${flag(drained)}`
    )
    line(
      `${name}: send → first attempt at ${late.rate}/s`,
      `p50 ${late.p50Ms} ms, p99 ${late.p99Ms} ms, max ${late.maxMs} ms (${late.measured}/${late.messages})`
    )
  }
} catch (error) {
  process.stderr.write(`benchmark failed: ${String(error)}\n`)
  process.exitCode = 1
} finally {
  results["loadAverageAtEnd"] = loadavg()
  results["finishedAt"] = new Date().toISOString()
  line(
    "load average (1/5/15 min) at start / end",
    `${loadText(results["loadAverageAtStart"] as Array<number>)} / ${loadText(loadavg())} on ${cpus().length} cores (well above 1, other work depresses every figure)`
  )
  const out = fileURLToPath(new URL("../results/", import.meta.url))
  mkdirSync(out, { recursive: true })
  writeFileSync(join(out, "webhooks.json"), `${JSON.stringify(results, null, 2)}\n`)
  child.disconnect()
  rmSync(dir, { recursive: true, force: true })
  if (pgAnswers) dropPgTables()
}
