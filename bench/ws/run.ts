/**
 * The WebSocket benchmark: `npx -y pnpm@10 bench:ws` from the repository root.
 *
 * Strata's channel server against a raw `ws` server and Socket.IO, each alone in its own process
 * (pinned to CPU 1 when `taskset` exists; this runner and its lean raw-TCP load client to CPU 0):
 *
 * - echo: connections each keep one 64-byte message in flight; round trips per second and their
 *   latency (p50, p99)
 * - fan-out: subscribers of one topic (room) and a publisher keeping a few messages in flight;
 *   deliveries per second, counted from bytes received so counting costs the load side little
 * - idle memory: the server's RSS and heap growth per idle connection, after a GC
 *
 * Each server is first checked (it must echo right, and Socket.IO is checked with its own client);
 * a server that answers wrong is reported and left out, and only that makes the exit code non-zero.
 * Figures never do: the goals (echo ≥ 0.9× ws, fan-out ≥ 2× Socket.IO, idle memory ≤ 1.2× ws) are
 * printed as met or not. Everything listens on 127.0.0.1, and a watchdog bounds the whole run.
 *
 * Settings (environment): BENCH_DURATION seconds per measurement (5), BENCH_WARMUP seconds (1),
 * BENCH_ROUNDS (1; medians when more), BENCH_ECHO_CONNECTIONS (100), BENCH_FANOUT_CONNECTIONS
 * (1000), BENCH_IDLE_CONNECTIONS (2000), BENCH_SERVERS and BENCH_WORKLOADS (echo, fanout, idle;
 * comma-separated subsets), BENCH_MAX_BACKGROUND
 * (0.25: a measurement during which other processes kept more cores than this busy is run again,
 * BENCH_RETRIES times at most (2), and the quietest run kept).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { cpus } from "node:os"
import { fileURLToPath } from "node:url"
import { io as socketIoClient } from "socket.io-client"
import { connect, type Connection, textFrame } from "./load.ts"
import {
  type ControlMessage,
  frames,
  HOST,
  type ServerMessage,
  type ServerName,
  socketIoFrames,
  TEXT
} from "./shared.ts"

const serverNames: ReadonlyArray<ServerName> = ["strata", "ws", "socketio"]
const workloadNames = ["echo", "fanout", "idle"] as const

const setting = (name: string, fallback: number, zeroAllowed = false): number => {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !zeroAllowed)) {
    console.error(
      `${name} must be a ${zeroAllowed ? "non-negative" : "positive"} number, not ${JSON.stringify(raw)}`
    )
    process.exit(2)
  }
  return value
}

function subset<A extends string>(name: string, known: ReadonlyArray<A>): ReadonlyArray<A> {
  const raw = process.env[name]
  if (raw === undefined || raw.trim() === "") return known
  const wanted = raw.split(",").map((s) => s.trim())
  const unknown = wanted.filter((w) => !known.includes(w as A))
  if (unknown.length > 0) {
    console.error(`${name}: unknown ${unknown.join(", ")}; known: ${known.join(", ")}`)
    process.exit(2)
  }
  return known.filter((k) => wanted.includes(k))
}

const config = {
  duration: setting("BENCH_DURATION", 5),
  warmup: setting("BENCH_WARMUP", 1),
  rounds: Math.round(setting("BENCH_ROUNDS", 1)),
  echoConnections: Math.round(setting("BENCH_ECHO_CONNECTIONS", 100)),
  fanoutConnections: Math.round(setting("BENCH_FANOUT_CONNECTIONS", 1000)),
  idleConnections: Math.round(setting("BENCH_IDLE_CONNECTIONS", 2000)),
  maxBackground: setting("BENCH_MAX_BACKGROUND", 0.25),
  retries: Math.round(setting("BENCH_RETRIES", 2, true)),
  servers: subset("BENCH_SERVERS", serverNames),
  workloads: subset("BENCH_WORKLOADS", workloadNames)
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const within = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error) => {
        clearTimeout(timer)
        reject(error)
      }
    )
  })

// ---------------------------------------------------------------------------------------------
// Server processes
// ---------------------------------------------------------------------------------------------

const pinned = cpus().length >= 2 && spawnSync("taskset", ["-cp", "0", String(process.pid)]).status === 0

let current: ChildProcess | undefined

const killCurrentNow = () => {
  if (current !== undefined && current.exitCode === null && current.signalCode === null)
    current.kill("SIGKILL")
}
process.on("exit", killCurrentNow)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killCurrentNow()
    process.exit(130)
  })
}

interface Server {
  readonly name: ServerName
  readonly port: number
  readonly protocol: string
  readonly control: <T extends ServerMessage["type"]>(
    message: ControlMessage & { readonly type: T }
  ) => Promise<Extract<ServerMessage, { readonly type: T }>>
}

const start = async (name: ServerName): Promise<Server> => {
  const file = fileURLToPath(new URL(`./servers/${name}.ts`, import.meta.url))
  const args = [process.execPath, "--expose-gc", file]
  const child = pinned
    ? spawn("taskset", ["-c", "1", ...args], { stdio: ["ignore", "ignore", "inherit", "ipc"] })
    : spawn(args[0]!, args.slice(1), { stdio: ["ignore", "ignore", "inherit", "ipc"] })
  current = child
  const ready = await within(
    new Promise<Extract<ServerMessage, { readonly type: "ready" }>>((resolve, reject) => {
      child.on("message", (message: ServerMessage) => {
        if (message.type === "ready") resolve(message)
      })
      child.once("exit", (code) => reject(new Error(`${name} exited with ${code} before it was ready`)))
    }),
    20_000,
    `${name} start`
  )
  const control = (message: ControlMessage) =>
    within(
      new Promise<any>((resolve) => {
        const listener = (answer: ServerMessage) => {
          if (answer.type !== message.type) return
          child.off("message", listener)
          resolve(answer)
        }
        child.on("message", listener)
        child.send(message)
      }),
      10_000,
      `${name} ${message.type}`
    )
  return { name, port: ready.port, protocol: ready.protocol, control }
}

const stop = async (): Promise<void> => {
  const child = current
  current = undefined
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  child.kill("SIGTERM")
  await Promise.race([exited, sleep(3000)])
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL")
    await exited
  }
}

// ---------------------------------------------------------------------------------------------
// Dialects: how the load client talks to each server
// ---------------------------------------------------------------------------------------------

interface Dialect {
  readonly open: (server: Server) => Promise<Connection>
  readonly echo: Buffer
  readonly publish: Buffer
  /** Joins the feed and waits for the acknowledgement. */
  readonly join: (connection: Connection) => Promise<void>
  /** Is this text frame an echo's answer (not a ping or other traffic)? */
  readonly isEcho: (payload: Buffer) => boolean
}

const untilText = async (connection: Connection, match: (text: string) => boolean): Promise<string> => {
  for (;;) {
    const text = await connection.next()
    if (match(text)) return text
  }
}

const strataDialect: Dialect = {
  open: (server) => connect(server.port, "/ws", server.protocol),
  echo: textFrame(frames.echo),
  publish: textFrame(frames.publish),
  join: async (connection) => {
    const ack = untilText(connection, (t) => t.startsWith('{"t":"j"'))
    connection.send(textFrame(frames.join))
    await ack
  },
  // `{"t":"m"` — the only text frames an echo connection gets are answers.
  isEcho: (payload) => payload[6] === 0x6d
}

const socketIoPing = textFrame("3")
const socketIoDialect: Dialect = {
  open: async (server) => {
    const connection = await connect(server.port, "/socket.io/?EIO=4&transport=websocket", "")
    await untilText(connection, (t) => t.startsWith("0"))
    const connected = untilText(connection, (t) => t.startsWith("40"))
    connection.send(textFrame("40"))
    await connected
    return connection
  },
  echo: textFrame(socketIoFrames.echo),
  publish: textFrame(socketIoFrames.publish),
  join: async (connection) => {
    const ack = untilText(connection, (t) => t.startsWith("430"))
    connection.send(textFrame(socketIoFrames.join))
    await ack
  },
  isEcho: (payload) => payload[0] === 0x34
}

const dialects: Record<ServerName, Dialect> = {
  strata: strataDialect,
  ws: strataDialect,
  socketio: socketIoDialect
}

/** Opens connections a batch at a time, so the listen backlog never overflows. */
const openMany = async (server: Server, dialect: Dialect, count: number): Promise<Array<Connection>> => {
  const all: Array<Connection> = []
  for (let i = 0; i < count; i += 100) {
    const batch = Array.from({ length: Math.min(100, count - i) }, () => dialect.open(server))
    all.push(...(await within(Promise.all(batch), 20_000, `opening connections to ${server.name}`)))
  }
  return all
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

const check = async (server: Server): Promise<void> => {
  if (server.name === "socketio") {
    // Socket.IO's own client, so the server is checked by the peer its users run.
    const client = socketIoClient(`http://${HOST}:${server.port}`, {
      transports: ["websocket"],
      reconnection: false
    })
    try {
      const answer = await within(
        new Promise<string>((resolve, reject) => {
          client.on("connect_error", reject)
          client.on("echoed", resolve)
          client.on("connect", () => client.emit("echo", TEXT))
        }),
        5000,
        "socket.io echo"
      )
      if (answer !== TEXT) throw new Error(`socket.io echoed ${JSON.stringify(answer)}`)
    } finally {
      client.close()
    }
    return
  }
  const connection = await dialects[server.name].open(server)
  try {
    const answer = untilText(connection, () => true)
    connection.send(textFrame(frames.echo))
    const expected = JSON.stringify({ t: "m", d: { _tag: "Echoed", text: TEXT } })
    const text = await within(answer, 5000, `${server.name} echo`)
    if (text !== expected) throw new Error(`${server.name} answered ${text}`)
  } finally {
    connection.close()
  }
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

const TICKS_PER_SECOND = 100

/** CPU seconds the whole machine spent busy so far (Linux); undefined elsewhere. */
const machineBusySeconds = (): number | undefined => {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!
    const [user, nice, system, , , irq, softirq, steal] = line.split(/\s+/).slice(1).map(Number)
    return (user! + nice! + system! + irq! + softirq! + steal!) / TICKS_PER_SECOND
  } catch {
    return undefined
  }
}

/**
 * Runs a measurement and reports the server's CPU share during it, and how many cores other
 * processes of the machine kept busy meanwhile (the background a run should be repeated over).
 */
const cpuShare = async (
  server: Server,
  run: () => Promise<number>
): Promise<{ value: number; cpu: number; loadCpu: number; background: number }> => {
  const before = await server.control({ type: "cpu" })
  const machineBefore = machineBusySeconds()
  const loadBefore = process.cpuUsage()
  const started = performance.now()
  const value = await run()
  const elapsed = performance.now() - started
  const load = process.cpuUsage(loadBefore)
  const machineAfter = machineBusySeconds()
  const after = await server.control({ type: "cpu" })
  const serverSeconds = (after.micros - before.micros) / 1e6
  const loadSeconds = (load.user + load.system) / 1e6
  const background =
    machineBefore === undefined || machineAfter === undefined
      ? 0
      : Math.max(0, (machineAfter - machineBefore - serverSeconds - loadSeconds) / (elapsed / 1000))
  return { value, cpu: serverSeconds / (elapsed / 1000), loadCpu: loadSeconds / (elapsed / 1000), background }
}

interface EchoResult {
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
  readonly serverCpu: number
  readonly loadCpu: number
  readonly background: number
}

const percentile = (sorted: Float64Array, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0

const echo = async (server: Server): Promise<EchoResult> => {
  const dialect = dialects[server.name]
  const connections = await openMany(server, dialect, config.echoConnections)
  let measuring = false
  let count = 0
  const latencies: Array<number> = []
  for (const connection of connections) {
    let sentAt = 0
    connection.onText = (payload) => {
      if (!dialect.isEcho(payload)) {
        if (payload.length === 1 && payload[0] === 0x32) connection.send(socketIoPing)
        return
      }
      const now = performance.now()
      if (measuring) {
        count++
        latencies.push(now - sentAt)
      }
      sentAt = now
      connection.send(dialect.echo)
    }
    sentAt = performance.now()
    connection.send(dialect.echo)
  }
  await sleep(config.warmup * 1000)
  const {
    value: seconds,
    cpu,
    loadCpu,
    background
  } = await cpuShare(server, async () => {
    measuring = true
    const started = performance.now()
    await sleep(config.duration * 1000)
    measuring = false
    return (performance.now() - started) / 1000
  })
  for (const connection of connections) connection.close()
  const sorted = Float64Array.from(latencies).toSorted()
  return {
    perSecond: count / seconds,
    p50: percentile(sorted, 0.5) * 1000,
    p99: percentile(sorted, 0.99) * 1000,
    serverCpu: cpu,
    loadCpu,
    background
  }
}

interface FanoutResult {
  readonly perSecond: number
  readonly serverCpu: number
  readonly loadCpu: number
  readonly background: number
}

const fanout = async (server: Server): Promise<FanoutResult> => {
  const dialect = dialects[server.name]
  const subscribers = await openMany(server, dialect, config.fanoutConnections)
  for (let i = 0; i < subscribers.length; i += 100) {
    await within(Promise.all(subscribers.slice(i, i + 100).map(dialect.join)), 20_000, `${server.name} joins`)
  }
  const publisher = await dialect.open(server)
  publisher.onText = () => {}
  let total = 0
  let sent = 0
  let frameSize = 0
  const window = 8
  const n = subscribers.length
  const topUp = () => {
    if (frameSize === 0) return
    while (sent - total / frameSize / n < window) {
      publisher.send(dialect.publish)
      sent++
    }
  }
  for (const subscriber of subscribers) {
    subscriber.count((bytes) => {
      total += bytes
      topUp()
    })
  }
  // One message first, to learn how many bytes a delivery is.
  publisher.send(dialect.publish)
  sent = 1
  await within(
    (async () => {
      const settled = () => total > 0 && total % n === 0
      for (let i = 0; i < 500 && !settled(); i++) await sleep(20)
      await sleep(200)
    })(),
    10_000,
    `${server.name} first fan-out`
  )
  frameSize = total / n
  topUp()
  await sleep(config.warmup * 1000)
  const {
    value: perSecond,
    cpu,
    loadCpu,
    background
  } = await cpuShare(server, async () => {
    const before = total
    const started = performance.now()
    await sleep(config.duration * 1000)
    return (total - before) / frameSize / ((performance.now() - started) / 1000)
  })
  sent = Infinity
  publisher.close()
  for (const subscriber of subscribers) subscriber.close()
  return { perSecond, serverCpu: cpu, loadCpu, background }
}

interface IdleResult {
  readonly rssPerConnection: number
  readonly heapPerConnection: number
}

const idle = async (server: Server): Promise<IdleResult> => {
  const dialect = dialects[server.name]
  // Warm the code paths first, so the baseline holds them.
  const warm = await openMany(server, dialect, 50)
  for (const connection of warm) connection.close()
  await sleep(500)
  const before = await server.control({ type: "memory" })
  const connections = await openMany(server, dialect, config.idleConnections)
  await sleep(1000)
  const after = await server.control({ type: "memory" })
  for (const connection of connections) connection.close()
  return {
    rssPerConnection: (after.rss - before.rss) / connections.length,
    heapPerConnection:
      (after.heapUsed + after.external - before.heapUsed - before.external) / connections.length
  }
}

// ---------------------------------------------------------------------------------------------
// Run
// ---------------------------------------------------------------------------------------------

interface Row {
  echo?: EchoResult
  fanout?: FanoutResult
  idle?: IdleResult
}

const median = (values: ReadonlyArray<number>): number => {
  const sorted = values.toSorted((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

const main = async () => {
  const budgetMs =
    config.rounds *
      config.servers.length *
      (config.retries + 1) *
      ((config.warmup + config.duration) * 2 * 1000 + 60_000) +
    60_000
  const watchdog = setTimeout(() => {
    console.error(`the benchmark took longer than ${Math.round(budgetMs / 1000)} s; stopping`)
    killCurrentNow()
    process.exit(3)
  }, budgetMs)
  console.log(
    `WebSocket benchmark: ${config.rounds} round(s), ${config.duration} s per measurement; Node ${process.version}, ` +
      `${cpus().length} CPUs${pinned ? ", server on CPU 1, load on CPU 0" : ""}`
  )
  const failed = new Set<ServerName>()
  const rounds: Array<Partial<Record<ServerName, Row>>> = []
  for (let round = 0; round < config.rounds; round++) {
    const results: Partial<Record<ServerName, Row>> = {}
    for (const name of config.servers) {
      if (failed.has(name)) continue
      const row: Row = {}
      for (const workload of config.workloads) {
        // A cell during which other processes kept more than `maxBackground` cores busy is run
        // again (at most `retries` times) and the quietest run kept.
        for (let attempt = 0; attempt <= config.retries; attempt++) {
          let background = 0
          try {
            const server = await start(name)
            // Every server is checked before its first measurement of each round.
            if (workload === config.workloads[0] && attempt === 0) await check(server)
            if (workload === "echo") {
              const result = await echo(server)
              if (row.echo === undefined || result.background < row.echo.background) row.echo = result
              background = result.background
            } else if (workload === "fanout") {
              const result = await fanout(server)
              if (row.fanout === undefined || result.background < row.fanout.background) row.fanout = result
              background = result.background
            } else row.idle = await idle(server)
            process.stdout.write(
              `  round ${round + 1} ${name} ${workload}${workload === "idle" ? "" : ` (background ${background.toFixed(2)} cores)`}\n`
            )
          } catch (error) {
            console.error(`  ${name} ${workload}: ${error instanceof Error ? error.message : String(error)}`)
            if (workload === config.workloads[0]) failed.add(name)
          } finally {
            await stop()
          }
          if (failed.has(name) || background <= config.maxBackground) break
        }
        if (failed.has(name)) break
      }
      results[name] = row
    }
    rounds.push(results)
  }
  clearTimeout(watchdog)

  const pick = (name: ServerName, f: (row: Row) => number | undefined) =>
    median(
      rounds.flatMap((r) =>
        (r[name] === undefined ? [] : [f(r[name]!)]).filter((v): v is number => v !== undefined)
      )
    )
  const summary = Object.fromEntries(
    config.servers.map((name) => [
      name,
      {
        echoPerSecond: pick(name, (r) => r.echo?.perSecond),
        echoP50Micros: pick(name, (r) => r.echo?.p50),
        echoP99Micros: pick(name, (r) => r.echo?.p99),
        echoServerCpu: pick(name, (r) => r.echo?.serverCpu),
        echoLoadCpu: pick(name, (r) => r.echo?.loadCpu),
        fanoutPerSecond: pick(name, (r) => r.fanout?.perSecond),
        fanoutServerCpu: pick(name, (r) => r.fanout?.serverCpu),
        fanoutLoadCpu: pick(name, (r) => r.fanout?.loadCpu),
        echoPerCpuSecond: pick(name, (r) =>
          r.echo === undefined ? undefined : r.echo.perSecond / r.echo.serverCpu
        ),
        fanoutPerCpuSecond: pick(name, (r) =>
          r.fanout === undefined ? undefined : r.fanout.perSecond / r.fanout.serverCpu
        ),
        idleRssBytes: pick(name, (r) => r.idle?.rssPerConnection),
        idleHeapBytes: pick(name, (r) => r.idle?.heapPerConnection)
      }
    ])
  ) as unknown as Record<ServerName, Record<string, number>>

  const k = (n: number) => (Number.isFinite(n) ? `${(n / 1000).toFixed(1)}k` : "—")
  const us = (n: number) => (Number.isFinite(n) ? `${n.toFixed(0)} µs` : "—")
  const kb = (n: number) => (Number.isFinite(n) ? `${(n / 1024).toFixed(1)} KB` : "—")
  const pct = (n: number) => (Number.isFinite(n) ? `${(n * 100).toFixed(0)}%` : "—")
  console.log("")
  console.log(
    [
      "server".padEnd(9),
      "echo msg/s".padStart(11),
      "p50".padStart(9),
      "p99".padStart(9),
      "cpu s/l".padStart(9),
      `fan-out ×${config.fanoutConnections} deliveries/s`.padStart(30),
      "cpu s/l".padStart(9),
      "idle RSS/conn".padStart(14),
      "idle heap/conn".padStart(15)
    ].join(" ")
  )
  for (const name of config.servers) {
    const s = summary[name]!
    console.log(
      [
        name.padEnd(9),
        k(s["echoPerSecond"]!).padStart(11),
        us(s["echoP50Micros"]!).padStart(9),
        us(s["echoP99Micros"]!).padStart(9),
        `${pct(s["echoServerCpu"]!)}/${pct(s["echoLoadCpu"]!)}`.padStart(9),
        k(s["fanoutPerSecond"]!).padStart(30),
        `${pct(s["fanoutServerCpu"]!)}/${pct(s["fanoutLoadCpu"]!)}`.padStart(9),
        kb(s["idleRssBytes"]!).padStart(14),
        kb(s["idleHeapBytes"]!).padStart(15)
      ].join(" ")
    )
  }
  const ratio = (a: number | undefined, b: number | undefined) =>
    a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b !== 0
      ? a / b
      : Number.NaN
  const strata = summary["strata"]
  const goals = [
    {
      what: "echo, strata / ws",
      value: ratio(strata?.["echoPerSecond"], summary["ws"]?.["echoPerSecond"]),
      goal: 0.9,
      atLeast: true
    },
    {
      what: "fan-out, strata / socket.io",
      value: ratio(strata?.["fanoutPerSecond"], summary["socketio"]?.["fanoutPerSecond"]),
      goal: 2,
      atLeast: true
    },
    {
      what: "fan-out, strata / ws",
      value: ratio(strata?.["fanoutPerSecond"], summary["ws"]?.["fanoutPerSecond"]),
      goal: undefined,
      atLeast: true
    },
    {
      what: "idle RSS, strata / ws",
      value: ratio(strata?.["idleRssBytes"], summary["ws"]?.["idleRssBytes"]),
      goal: 1.2,
      atLeast: false
    },
    {
      what: "idle heap, strata / ws",
      value: ratio(strata?.["idleHeapBytes"], summary["ws"]?.["idleHeapBytes"]),
      goal: undefined,
      atLeast: false
    },
    {
      what: "echo per server CPU-second, strata / ws",
      value: ratio(strata?.["echoPerCpuSecond"], summary["ws"]?.["echoPerCpuSecond"]),
      goal: undefined,
      atLeast: true
    },
    {
      what: "fan-out per server CPU-second, strata / socket.io",
      value: ratio(strata?.["fanoutPerCpuSecond"], summary["socketio"]?.["fanoutPerCpuSecond"]),
      goal: undefined,
      atLeast: true
    },
    {
      what: "echo, strata / socket.io",
      value: ratio(strata?.["echoPerSecond"], summary["socketio"]?.["echoPerSecond"]),
      goal: undefined,
      atLeast: true
    }
  ]
  console.log("")
  for (const g of goals) {
    const verdict =
      g.goal === undefined || !Number.isFinite(g.value)
        ? ""
        : (g.atLeast ? g.value >= g.goal : g.value <= g.goal)
          ? `  goal ${g.atLeast ? "≥" : "≤"} ${g.goal}: met`
          : `  goal ${g.atLeast ? "≥" : "≤"} ${g.goal}: not met`
    console.log(`${g.what.padEnd(50)} ${Number.isFinite(g.value) ? g.value.toFixed(2) : "—"}×${verdict}`)
  }
  console.log("")
  for (const name of config.servers) {
    const s = summary[name]!
    console.log(
      `${name.padEnd(9)} per server CPU-second: echo ${k(s["echoPerCpuSecond"]!)}, fan-out ${k(s["fanoutPerCpuSecond"]!)}`
    )
  }
  console.log(
    "\ncpu s/l: the server's and the load client's share of a core. A server well under 100% while the\n" +
      "load client is near it means the load client, not the server, set the pace of that workload.\n" +
      "Per server CPU-second figures move less than throughput when other processes share the machine."
  )
  const out = fileURLToPath(new URL("../results/ws.json", import.meta.url))
  mkdirSync(fileURLToPath(new URL("../results/", import.meta.url)), { recursive: true })
  writeFileSync(
    out,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        node: process.version,
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model,
        pinned,
        config: { ...config, servers: [...config.servers] },
        summary,
        ratios: Object.fromEntries(goals.map((g) => [g.what, Number.isFinite(g.value) ? g.value : null])),
        rounds
      },
      null,
      2
    ) + "\n"
  )
  if (failed.size > 0) {
    console.error(`servers left out because they answered wrong or did not start: ${[...failed].join(", ")}`)
    process.exitCode = 1
  }
}

await main()
