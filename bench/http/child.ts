/**
 * Starting and stopping one server process. A server runs alone in its own process so that its
 * CPU and memory are its own; the runner finds its port on its stdout, waits until it answers, and
 * ends it by its pid. Every wait is bounded.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { request } from "node:http"
import { fileURLToPath } from "node:url"
import { HOST } from "./shared.ts"

export const serverNames = ["strata", "effect", "fastify", "hono", "node"] as const
export type ServerName = (typeof serverNames)[number]

export interface Server {
  readonly name: ServerName
  readonly pid: number
  readonly port: number
  readonly url: string
  /** What the server wrote to stderr so far (its log lines when logging to stderr). */
  readonly stderr: () => string
}

/** Why a server could not be used. */
export class StartError extends Error {}

const STARTUP_TIMEOUT_MS = 20_000
const READY_TIMEOUT_MS = 10_000
const STOP_GRACE_MS = 3_000
const STDERR_LIMIT = 1 << 20

/** The process the runner is in charge of; at most one, since servers run one at a time. */
let current: ChildProcess | undefined

/** Kills the current server at once; for exits and signals, where nothing can be awaited. */
export const killCurrentNow = (): void => {
  if (current !== undefined && current.exitCode === null && current.signalCode === null) {
    current.kill("SIGKILL")
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const exited = (child: ChildProcess, ms: number): Promise<boolean> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(true)
    : new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), ms)
        child.once("exit", () => {
          clearTimeout(timer)
          resolve(true)
        })
      })

/** One GET with a fresh connection that is closed after, so no idle socket outlives the check. */
const answers = (url: string): Promise<boolean> =>
  new Promise((resolve) => {
    const req = request(url, { agent: false, timeout: 1_000 }, (res) => {
      res.resume()
      res.on("end", () => resolve(res.statusCode === 200))
      res.on("error", () => resolve(false))
    })
    req.on("timeout", () => req.destroy())
    req.on("error", () => resolve(false))
    req.end()
  })

/**
 * Starts a server and resolves once it answers `GET /hello` with 200. `logToStderr` makes its
 * request log visible (for the log check); otherwise logs go to a sink that discards them.
 */
export const start = async (
  name: ServerName,
  options: { readonly logToStderr: boolean }
): Promise<Server> => {
  if (current !== undefined) await stop()
  const file = fileURLToPath(new URL(`./servers/${name}.ts`, import.meta.url))
  // The same Node binary as the runner (Node 24 under pnpm), which runs the .ts server directly.
  const child = spawn(process.execPath, [file], {
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      NODE_ENV: "production",
      BENCH_LOG_SINK: options.logToStderr ? "stderr" : "discard"
    }
  })
  current = child
  let stdout = ""
  let stderr = ""
  child.stderr!.setEncoding("utf8")
  child.stderr!.on("data", (chunk: string) => {
    if (stderr.length < STDERR_LIMIT) stderr += chunk
  })
  child.stdout!.setEncoding("utf8")

  const port = await new Promise<number>((resolve, reject) => {
    const fail = (why: string) => {
      cleanup()
      reject(new StartError(`${name}: ${why}${stderr === "" ? "" : `\n${stderr.slice(-2_000)}`}`))
    }
    const onData = (chunk: string) => {
      stdout += chunk
      const match = /^listening (\d+)$/m.exec(stdout)
      if (match !== null) {
        cleanup()
        resolve(Number(match[1]))
      }
    }
    const onExit = (code: number | null, signal: string | null) =>
      fail(`exited before listening (code ${code}, signal ${signal})`)
    const onError = (error: Error) => fail(`could not be spawned: ${error.message}`)
    const timer = setTimeout(() => fail(`did not listen within ${STARTUP_TIMEOUT_MS} ms`), STARTUP_TIMEOUT_MS)
    const cleanup = () => {
      clearTimeout(timer)
      child.stdout!.off("data", onData)
      child.off("exit", onExit)
      child.off("error", onError)
    }
    child.stdout!.on("data", onData)
    child.once("exit", onExit)
    child.once("error", onError)
  }).catch(async (error: unknown) => {
    await stop()
    throw error
  })
  // Keep draining stdout so a chatty server never blocks on a full pipe.
  child.stdout!.resume()

  const url = `http://${HOST}:${port}`
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (!(await answers(`${url}/hello`))) {
    if (Date.now() > deadline || child.exitCode !== null) {
      await stop()
      throw new StartError(`${name}: listened on ${port} but did not answer GET /hello with 200`)
    }
    await sleep(50)
  }
  return { name, pid: child.pid!, port, url, stderr: () => stderr }
}

/** Stops the current server by its pid: SIGTERM, then SIGKILL if it has not exited in time. */
export const stop = async (): Promise<void> => {
  const child = current
  if (child === undefined) return
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGTERM")
    if (!(await exited(child, STOP_GRACE_MS))) {
      child.kill("SIGKILL")
      await exited(child, STOP_GRACE_MS)
    }
  }
  // Let the last stderr chunks arrive before the caller reads them.
  await new Promise<void>((resolve) => {
    if (child.stderr === null || child.stderr.readableEnded) resolve()
    else {
      const timer = setTimeout(resolve, 500)
      child.stderr.once("end", () => {
        clearTimeout(timer)
        resolve()
      })
    }
  })
  if (current === child) current = undefined
}

// /proc counts CPU time in clock ticks; 100 per second on Linux for as long as it has had /proc.
const TICKS_PER_SECOND = 100

/** CPU seconds a process has used (user + system), from /proc (Linux); undefined elsewhere. */
export const processCpuSeconds = (pid: number): number | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
  } catch {
    return undefined
  }
}

/** CPU seconds the whole machine has spent busy (all cores, not idle nor waiting on I/O). */
export const machineBusySeconds = (): number | undefined => {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!
    const [user, nice, system, _idle, _iowait, irq, softirq, steal] = line.split(/\s+/).slice(1).map(Number)
    return (user! + nice! + system! + irq! + softirq! + steal!) / TICKS_PER_SECOND
  } catch {
    return undefined
  }
}

/** The resident set size of a process in MiB, from /proc (Linux); undefined elsewhere. */
export const rssMiB = (pid: number): number | undefined => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const kib = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)
    return kib === null ? undefined : Number(kib[1]) / 1024
  } catch {
    return undefined
  }
}
