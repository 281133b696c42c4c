/**
 * What the chat tests share: a data directory per test, the server in this process or as a child
 * process running `src/main.ts`, a login through the form, and the typed client sending the
 * session cookie (Node's WebSocket takes headers; a browser sends the cookie by itself).
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as HttpServer from "effect/http/HttpServer"
import { Client, type Transport } from "@strata/ws"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { server, sessionKeys } from "../src/app.ts"
import { chat } from "../src/Chat.ts"

/** A fresh directory, removed with the scope. */
export const tempDir = (prefix: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** Where a server listens. */
export interface Address {
  readonly http: string
  readonly ws: string
  readonly port: number
}

const addressOf = (url: string): Address => ({
  http: url,
  ws: url.replace(/^http/, "ws"),
  port: Number(new URL(url).port)
})

/** The app on 127.0.0.1 in this process, stopped (channels drained) with the scope. */
export const startInProcess = (options: {
  readonly dataDir: string
  readonly port?: number | undefined
  readonly redisUrl?: string | undefined
  readonly redisPrefix?: string | undefined
}): Effect.Effect<Address, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const context = yield* Layer.build(
      server({
        port: options.port ?? 0,
        host: "127.0.0.1",
        dataDir: options.dataDir,
        redisUrl: options.redisUrl,
        redisPrefix: options.redisPrefix,
        keys: sessionKeys(options.dataDir),
        secureCookies: false
      })
    )
    return addressOf(HttpServer.formatAddress(Context.get(context, HttpServer.HttpServer).address))
  })

const mainScript = fileURLToPath(new URL("../src/main.ts", import.meta.url))

/** `node src/main.ts` as a child process, as `pnpm start` runs it. */
export interface Process {
  readonly address: Address
  /** Sends the signal and waits (up to 10 s) for the exit. */
  readonly stop: (signal: "SIGTERM" | "SIGKILL") => Effect.Effect<void>
}

const exited = (child: ChildProcess, within: Duration.Input) =>
  Effect.promise(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        const timer = setTimeout(
          () => {
            child.kill("SIGKILL")
            resolve()
          },
          Duration.toMillis(Duration.fromInputUnsafe(within))
        )
        child.once("exit", () => {
          clearTimeout(timer)
          resolve()
        })
      })
  )

/**
 * Starts `src/main.ts` with `PORT` and `DATA_DIR` and waits (up to 15 s) for the line that says
 * where it listens. The process is killed with the scope if still running.
 */
export const startProcess = (options: {
  readonly dataDir: string
  readonly port: number
}): Effect.Effect<Process, Error, Scope.Scope> =>
  Effect.gen(function* () {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, [mainScript], {
          env: { ...process.env, PORT: String(options.port), HOST: "127.0.0.1", DATA_DIR: options.dataDir },
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      (running) =>
        Effect.suspend(() => {
          if (running.exitCode === null && running.signalCode === null) running.kill("SIGKILL")
          return exited(running, "5 seconds")
        })
    )
    const url = yield* Effect.callback<string, Error>((resume) => {
      let output = ""
      const onData = (data: Buffer) => {
        output += data.toString()
        const match = /listening on (http:\/\/\S+)/.exec(output)
        if (match !== null) resume(Effect.succeed(match[1]!))
      }
      const onExit = (code: number | null) =>
        resume(Effect.fail(new Error(`src/main.ts exited with ${code} before listening:\n${output}`)))
      child.stdout!.on("data", onData)
      child.stderr!.on("data", (data: Buffer) => (output += data.toString()))
      child.once("exit", onExit)
      return Effect.sync(() => {
        child.stdout!.off("data", onData)
        child.off("exit", onExit)
      })
    }).pipe(
      Effect.timeoutOrElse({
        duration: "15 seconds",
        orElse: () => Effect.fail(new Error("src/main.ts did not say where it listens within 15 s"))
      })
    )
    return {
      address: addressOf(url),
      stop: (signal) => Effect.suspend(() => (child.kill(signal), exited(child, "10 seconds")))
    }
  })

const cookieOf = (response: Response): string | undefined =>
  response.headers
    .getSetCookie()
    .map((c) => c.split(";")[0]!)
    .find((c) => c.startsWith("sid="))

/**
 * Logs in through the form as a browser would (the page's CSRF token, then the post); the
 * session cookie afterwards, and the post's status.
 */
export const login = (http: string, username: string, password: string) =>
  Effect.promise(async () => {
    const page = await fetch(`${http}/`)
    const anonymous = cookieOf(page)
    const token = /name="_csrf" value="([^"]+)"/.exec(await page.text())?.[1] ?? ""
    const response = await fetch(`${http}/login`, {
      method: "POST",
      redirect: "manual",
      headers: {
        origin: http,
        "content-type": "application/x-www-form-urlencoded",
        ...(anonymous === undefined ? {} : { cookie: anonymous })
      },
      body: new URLSearchParams({ _csrf: token, username, password }).toString()
    })
    return { status: response.status, location: response.headers.get("location"), cookie: cookieOf(response) }
  })

/** The page `/` as a logged-in user sees it. */
export const pageAs = (http: string, cookie: string) =>
  Effect.promise(async () => (await fetch(`${http}/`, { headers: { cookie } })).text())

/** A network that can be cut: while `offline`, every connection attempt is refused at once. */
export interface Network {
  offline: boolean
}

// Node's WebSocket (undici's) takes headers in an object as its second argument; the DOM type of
// the global does not know that form.
const NodeWebSocket = WebSocket as unknown as new (
  url: string,
  init: { readonly protocols: string | Array<string>; readonly headers: Record<string, string> }
) => Transport.WebSocketLike

/** Node's WebSocket sending the session cookie with the handshake. */
const socketWith = (cookie: string | undefined, network: Network): Transport.WebSocketConstructor =>
  class extends NodeWebSocket {
    constructor(url: string, protocols?: string | Array<string>) {
      // Port 1 on 127.0.0.1 has no listener: the attempt fails like a cut network.
      super(network.offline ? "ws://127.0.0.1:1/" : url, {
        protocols: protocols ?? [],
        headers: cookie === undefined ? {} : { cookie }
      })
    }
  }

/**
 * The typed client of the chat channel as `cookie`'s user. Its refused-handshake probe sends the
 * cookie too; it reconnects quickly (100 ms, then up to 500 ms between attempts).
 */
export const connect = (
  address: Address,
  cookie: string | undefined,
  options: { readonly network?: Network | undefined; readonly reconnect?: false | undefined } = {}
) =>
  Client.make(chat, {
    url: `${address.ws}/ws/chat`,
    WebSocket: socketWith(cookie, options.network ?? { offline: false }),
    fetch: (url, init) =>
      fetch(url, { ...init, headers: { ...init?.headers, ...(cookie === undefined ? {} : { cookie }) } }),
    reconnect: options.reconnect ?? { initialDelay: "100 millis", maxDelay: "500 millis", jitter: 0 }
  })

/**
 * Pulls a stream one element at a time; each pull fails after `within` (5 s) instead of hanging.
 */
export const puller = <A, E>(stream: Stream.Stream<A, E>, within: Duration.Input = "5 seconds") =>
  Effect.map(Stream.toPull(stream), (pull) => {
    const buffer: Array<A> = []
    const next = Effect.suspend(() =>
      buffer.length > 0
        ? Effect.succeed(buffer.shift()!)
        : Effect.map(pull, (chunk) => {
            buffer.push(...chunk)
            return buffer.shift()!
          })
    )
    return next.pipe(
      Effect.timeoutOrElse({
        duration: within,
        orElse: () =>
          Effect.die(new Error(`nothing arrived within ${Duration.format(Duration.fromInputUnsafe(within))}`))
      })
    )
  })

/** Pulls until an element passes `predicate` (each pull bounded as in `puller`). */
export const pullUntil = <A, E, B extends A>(
  next: Effect.Effect<A, E>,
  predicate: (a: A) => a is B
): Effect.Effect<B, E> =>
  Effect.flatMap(next, (a) => (predicate(a) ? Effect.succeed(a) : pullUntil(next, predicate)))
