/**
 * The socket a channel runs on, seen from the server: Node's `ws` (the default on Node's HTTP
 * server), or an in-memory pair for fast tests. Use `Transport.memory()` to run a whole app —
 * middleware, upgrade, channel — in one process without a socket.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as EffectSocket from "effect/socket/Socket"
import type * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Protocol from "./Protocol.ts"

/**
 * What the channel hears from a socket.
 *
 * @category models
 */
export interface Listener {
  /** A text frame arrived. */
  readonly onMessage: (text: string) => void
  /** A binary frame arrived (channels speak text only). */
  readonly onBinary: () => void
  /** A protocol pong arrived. */
  readonly onPong: () => void
  /** Everything written so far left the process; more can be written. */
  readonly onDrain: () => void
  /** The socket closed, with the code and reason the peer sent (or 1006). */
  readonly onClose: (code: number, reason: string) => void
}

/**
 * The server side of one accepted WebSocket.
 *
 * @category models
 */
export interface Socket {
  /** The subprotocol agreed at the handshake. */
  readonly protocol: string
  /** Bytes written and not yet handed to the network. */
  readonly bufferedAmount: number
  /** Sends a text frame; bytes must be the UTF-8 of a text frame (so fan-out encodes once). */
  readonly send: (data: string | Uint8Array) => void
  /** Starts the close handshake. */
  readonly close: (code: number, reason: string) => void
  /** Destroys the socket at once. */
  readonly terminate: () => void
  /** Sends a protocol ping; false when the transport has none (the channel then pings with a frame). */
  readonly ping: () => boolean
  /** Holds writes until `uncork`, so frames sent together leave in one write. */
  readonly cork: () => void
  readonly uncork: () => void
  /** Stops and restarts reading (inbound backpressure). */
  readonly pause: () => void
  readonly resume: () => void
  /** Sets the listener; called once, right after the upgrade. */
  readonly listen: (listener: Listener) => void
}

/**
 * What a route asks of the upgrade.
 *
 * @category models
 */
export interface UpgradeOptions {
  /** The subprotocol to agree on (`strata.<hash>`); the route has checked the client offered it. */
  readonly protocol: string
  /** Larger messages close the connection with 1009. */
  readonly maxMessageSize: number
}

/**
 * The upgrade could not be done on this server.
 *
 * @category errors
 */
export class UpgradeError extends Data.TaggedError("UpgradeError")<{
  readonly reason: string
  readonly cause?: unknown
}> {}

/**
 * Turns an HTTP request that passed the route's middleware into a socket.
 *
 * @category models
 */
export interface Upgrader {
  readonly upgrade: (
    request: HttpServerRequest.HttpServerRequest,
    options: UpgradeOptions
  ) => Effect.Effect<Socket, UpgradeError>
}

// Loaded on first use, so that modules which only define channels (and the browser client) never
// import Node's `ws`. Once loaded it is kept: a dynamic import per upgrade went through the module
// loader every time (about 3 KB of garbage and an extra asynchronous hop per connection).
let nodeTransport: typeof import("./NodeTransport.ts") | undefined

const loadNodeTransport = Effect.tryPromise({
  try: () => import("./NodeTransport.ts"),
  catch: (cause) => new UpgradeError({ reason: "cannot load the Node transport", cause })
})

const nodeUpgrader: Upgrader = {
  upgrade: (request, options) =>
    nodeTransport !== undefined
      ? nodeTransport.upgrade(request, options)
      : Effect.flatMap(loadNodeTransport, (node) => {
          nodeTransport = node
          return node.upgrade(request, options)
        })
}

// ---------------------------------------------------------------------------------------------
// Effect's own upgrade
// ---------------------------------------------------------------------------------------------

const textDecoder = new TextDecoder()

/**
 * Upgrades with Effect's `HttpServerRequest.upgrade`, on any Effect HTTP server that supports it
 * (Node's, Bun's, …). What Effect's `Socket` does not expose, the channel does without: there are
 * no protocol pings (heartbeats are `{"t":"h"}` frames, which the client answers), no
 * `bufferedAmount` (the outbound queue never fills, so its policy does not apply; Effect's writer
 * buffers), and the size limit is checked after the server's own `maxPayload` let a message in.
 *
 * @example
 * ```ts
 * App.serve(app).pipe(Layer.provide(Layer.succeed(Transport.Upgrader, Transport.effectSocket)))
 * ```
 * @category constructors
 */
export const effectSocket: Upgrader = {
  upgrade: (request, options) =>
    Effect.gen(function* () {
      const socket = yield* Effect.mapError(
        request.upgrade,
        (cause) => new UpgradeError({ reason: "the server cannot upgrade this request", cause })
      )
      // The socket lives until it closes, not as long as the upgrade call.
      const scope = yield* Scope.make()
      const run = Effect.runForkWith(yield* Effect.context<never>())
      const writer = yield* Scope.provide(socket.writer, scope)
      let listener: Listener | undefined
      let open = true
      const finish = (code: number, reason: string) => {
        if (!open) return
        open = false
        run(Scope.close(scope, Exit.void))
        listener?.onClose(code, reason)
      }
      const read = Effect.gen(function* () {
        const reader = yield* socket.reader
        for (;;) {
          const chunk = yield* reader.pull
          for (const item of chunk) {
            if (typeof item !== "string") listener?.onBinary()
            else if (encoder.encode(item).length > options.maxMessageSize) {
              yield* writer.write(
                new EffectSocket.CloseEvent(Protocol.CloseCode.MessageTooBig, "Max payload size exceeded")
              )
            } else listener?.onMessage(item)
          }
        }
      }).pipe(
        Effect.catchCause((cause) => {
          const error = Cause.findErrorOption(cause)
          const reason =
            Option.isSome(error) && EffectSocket.isSocketError(error.value) ? error.value.reason : undefined
          return Effect.sync(() =>
            reason !== undefined && reason._tag === "SocketCloseError"
              ? finish(reason.code, reason.closeReason ?? "")
              : finish(Protocol.CloseCode.Abnormal, "")
          )
        }),
        Scope.provide(scope)
      )
      const upgraded: Socket = {
        protocol: options.protocol,
        bufferedAmount: 0,
        send: (data) => {
          if (open) run(writer.write(typeof data === "string" ? data : textDecoder.decode(data)))
        },
        close: (code, reason) => {
          if (open) run(writer.write(new EffectSocket.CloseEvent(code, reason)))
        },
        terminate: () => finish(Protocol.CloseCode.Abnormal, ""),
        ping: () => false,
        cork: () => {},
        uncork: () => {},
        // Effect's reader pauses the socket itself when its buffer fills.
        pause: () => {},
        resume: () => {},
        listen: (l) => {
          listener = l
          run(read)
        }
      }
      return upgraded
    })
}

// A request Node's HTTP server handed over on its `upgrade` event; anything else (another
// runtime's server) goes through Effect's own upgrade.
const isNodeUpgrade = (request: HttpServerRequest.HttpServerRequest): boolean => {
  const source = (request as { readonly source?: unknown }).source
  return (
    typeof source === "object" &&
    source !== null &&
    (source as { readonly upgrade?: unknown }).upgrade === true &&
    typeof (source as { readonly socket?: unknown }).socket === "object"
  )
}

/**
 * A header the route checks before it upgrades (`upgrade`, `sec-websocket-protocol`). On Node's
 * upgrade event it is read from Node's request, which is where ws reads the handshake's headers
 * too; reading `request.headers` there would build Effect's copy of every header (about 2 KB per
 * upgrade), kept by the request for as long as the connection lasts.
 *
 * @internal
 */
export const upgradeHeader = (
  request: HttpServerRequest.HttpServerRequest,
  name: "upgrade" | "sec-websocket-protocol"
): string | undefined => {
  if (isNodeUpgrade(request)) {
    const value = (request as unknown as { readonly source: { readonly headers: NodeHeaders } }).source
      .headers[name]
    return value === undefined || typeof value === "string" ? value : value.join(", ")
  }
  return request.headers[name]
}

type NodeHeaders = Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

const defaultUpgrader: Upgrader = {
  upgrade: (request, options) =>
    isNodeUpgrade(request) ? nodeUpgrader.upgrade(request, options) : effectSocket.upgrade(request, options)
}

/**
 * How routes upgrade: by default with Node's `ws` on the request's socket when Effect's Node HTTP
 * server handed it over, and with Effect's own upgrade (`Transport.effectSocket`) on other
 * servers; `Transport.memory()` provides an in-memory one for tests.
 *
 * @category services
 */
export const Upgrader = Context.Reference<Upgrader>("@strata/ws/Transport/Upgrader", {
  defaultValue: () => defaultUpgrader
})

// ---------------------------------------------------------------------------------------------
// In memory
// ---------------------------------------------------------------------------------------------

/**
 * The part of the browser `WebSocket` a client needs; the global one, `ws`'s and the in-memory one
 * all have it.
 *
 * @category models
 */
export interface WebSocketLike {
  readonly readyState: number
  readonly protocol: string
  send(data: string): void
  close(code?: number, reason?: string): void
  /** `open`, `message` (`event.data`), `close` (`event.code`, `event.reason`) and `error`. */
  addEventListener(type: string, listener: (event: any) => void): void
  removeEventListener(type: string, listener: (event: any) => void): void
}

/**
 * A constructor of WebSockets, as `globalThis.WebSocket`.
 *
 * @category models
 */
export type WebSocketConstructor = new (url: string, protocols?: string | Array<string>) => WebSocketLike

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const byteLength = (data: string | Uint8Array): number =>
  typeof data === "string" ? encoder.encode(data).length : data.length

/**
 * The client end of an in-memory socket, with controls for tests.
 *
 * @category models
 */
export interface MemoryWebSocket extends WebSocketLike {
  /** Frames from the server not read yet. */
  readonly inboxBytes: number
  /** The HTTP status and body the upgrade was refused with, if it was. */
  readonly refused: { readonly status: number; readonly body: string } | undefined
  /** Stops reading: frames pile up on the server side (its `bufferedAmount` grows). */
  readonly pause: () => void
  /** Reads again; the server hears `drain` once everything was read. */
  readonly resume: () => void
  /** Stops answering protocol pings and close frames, like a peer that vanished. */
  readonly freeze: () => void
  /** Drops the connection without a close frame (the server sees 1006). */
  readonly drop: () => void
}

/**
 * An in-memory transport: provide `layer` (the `Transport.Upgrader`) to the app and build clients
 * with `WebSocket(handler)`, where `handler` is the app's web handler (`App.toWebHandler`).
 * A connection runs the route's middleware exactly as over a socket, and is refused with the same
 * HTTP response.
 *
 * @example
 * ```ts
 * const memory = Transport.memory()
 * const { handler } = App.toWebHandler(app, Layer.mergeAll(Hub.layer(), memory.layer))
 * const client = yield* Client.make(chat, { url: "ws://test/chat", WebSocket: memory.WebSocket(handler) })
 * ```
 * @category constructors
 */
export const memory = (): {
  readonly upgrader: Upgrader
  /**
   * Provides `upgrader` as the `Transport.Upgrader`. Typed as providing nothing: the upgrader is a
   * reference with a default, so it never appears among an app's requirements.
   */
  readonly layer: Layer.Layer<never>
  readonly WebSocket: (handler: (request: Request) => Promise<Response>) => WebSocketConstructor
  /** A `fetch` that goes through the same handler (for the client's probe). */
  readonly fetch: (
    handler: (request: Request) => Promise<Response>
  ) => (url: string, init?: RequestInit) => Promise<Response>
  /** Every client socket made so far, newest last. */
  readonly sockets: ReadonlyArray<MemoryWebSocket>
} => {
  const pending = new Map<string, MemoryClient>()
  const sockets: Array<MemoryClient> = []
  let counter = 0

  const upgrader: Upgrader = {
    upgrade: (request, options) =>
      Effect.suspend(() => {
        const id = request.headers["x-strata-memory-socket"]
        const client = id === undefined ? undefined : pending.get(id)
        if (client === undefined) {
          return Effect.fail(new UpgradeError({ reason: "no in-memory client is waiting for this request" }))
        }
        pending.delete(id!)
        return Effect.succeed(client.accept(options))
      })
  }

  const WebSocket = (handler: (request: Request) => Promise<Response>): WebSocketConstructor =>
    class extends MemoryClient {
      constructor(url: string, protocols?: string | Array<string>) {
        const id = String(++counter)
        super()
        sockets.push(this)
        pending.set(id, this)
        const list = protocols === undefined ? [] : typeof protocols === "string" ? [protocols] : protocols
        const httpUrl = url.replace(/^ws/, "http")
        handler(
          new Request(httpUrl, {
            headers: {
              upgrade: "websocket",
              connection: "Upgrade",
              "sec-websocket-version": "13",
              "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
              ...(list.length > 0 ? { "sec-websocket-protocol": list.join(", ") } : {}),
              "x-strata-memory-socket": id
            }
          })
        ).then(
          async (response) => {
            pending.delete(id)
            // Once upgraded, the response only arrives when the connection is over.
            if (this.readyState === 0) this.refuse(response.status, await response.text())
          },
          (cause) => {
            pending.delete(id)
            if (this.readyState === 0) this.refuse(500, String(cause))
          }
        )
      }
    }

  return {
    upgrader,
    layer: Layer.succeed(Upgrader, upgrader) as Layer.Layer<never>,
    WebSocket,
    fetch: (handler) => (url, init) => handler(new Request(url, init)),
    sockets
  }
}

class MemoryClient implements MemoryWebSocket {
  readyState = 0
  protocol = ""
  refused: { readonly status: number; readonly body: string } | undefined = undefined

  /** @internal */ server: Listener | undefined
  /** @internal */ maxMessageSize = Infinity
  /** @internal */ frozen = false
  /** @internal */ serverPaused = false
  /** @internal */ serverInbox: Array<string> = []
  // Frames from the server not read yet, and their size (the server's bufferedAmount).
  /** @internal */ inbox: Array<string> = []
  /** @internal */ inboxBytes = 0
  private paused = false
  private flushing = false
  private readonly listeners = new Map<string, Set<(event: any) => void>>()

  addEventListener(type: string, listener: (event: any) => void): void {
    let set = this.listeners.get(type)
    if (set === undefined) this.listeners.set(type, (set = new Set()))
    set.add(listener)
  }

  removeEventListener(type: string, listener: (event: any) => void): void {
    this.listeners.get(type)?.delete(listener)
  }

  private dispatch(type: string, event: unknown): void {
    const set = this.listeners.get(type)
    if (set !== undefined) for (const listener of Array.from(set)) listener(event)
  }

  /** @internal */
  refuse(status: number, body: string): void {
    this.refused = { status, body }
    this.readyState = 3
    this.dispatch("error", { type: "error" })
    this.dispatch("close", { type: "close", code: 1006, reason: "" })
  }

  /** @internal */
  accept(options: UpgradeOptions): Socket {
    this.protocol = options.protocol
    this.maxMessageSize = options.maxMessageSize
    queueMicrotask(() => {
      if (this.readyState !== 0) return
      this.readyState = 1
      this.dispatch("open", { type: "open" })
      this.scheduleFlush()
    })
    return new MemoryServerSocket(this, options.protocol)
  }

  /** @internal */
  scheduleFlush(): void {
    if (this.flushing || this.paused) return
    this.flushing = true
    queueMicrotask(() => this.flush())
  }

  private flush(): void {
    this.flushing = false
    if (this.paused || this.readyState !== 1) return
    const hadBytes = this.inboxBytes > 0
    while (this.inbox.length > 0 && !this.paused && this.readyState === 1) {
      const text = this.inbox.shift()!
      this.inboxBytes -= byteLength(text)
      this.dispatch("message", { type: "message", data: text })
    }
    if (hadBytes && this.inbox.length === 0) this.server?.onDrain()
  }

  send(data: string): void {
    if (this.readyState === 0) throw new Error("InvalidStateError: the socket is still connecting")
    if (this.readyState !== 1) return
    if (byteLength(data) > this.maxMessageSize) {
      // What ws does: answer with 1009 and close.
      queueMicrotask(() =>
        this.closeFromServer(Protocol.CloseCode.MessageTooBig, "Max payload size exceeded")
      )
      return
    }
    queueMicrotask(() => this.deliverToServer(data))
  }

  /** @internal */
  deliverToServer(text: string): void {
    if (this.readyState !== 1) return
    if (this.serverPaused) {
      this.serverInbox.push(text)
      return
    }
    this.server?.onMessage(text)
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState >= 2) return
    this.readyState = 2
    // The server echoes the close frame; both ends see the client's code.
    queueMicrotask(() => this.finish(code, reason))
  }

  /** @internal */
  closeFromServer(code: number, reason: string): void {
    if (this.readyState >= 2 || this.frozen) return
    this.readyState = 2
    // Frames sent before the close frame are still read first.
    queueMicrotask(() => {
      this.paused = false
      this.flush()
      this.finish(code, reason)
    })
  }

  /** @internal */
  finish(code: number, reason: string): void {
    if (this.readyState === 3) return
    this.readyState = 3
    const server = this.server
    this.server = undefined
    server?.onClose(code, reason)
    this.dispatch("close", { type: "close", code, reason })
  }

  pause(): void {
    this.paused = true
  }

  resume(): void {
    this.paused = false
    this.scheduleFlush()
  }

  freeze(): void {
    this.frozen = true
  }

  drop(): void {
    this.finish(1006, "")
  }
}

class MemoryServerSocket implements Socket {
  readonly client: MemoryClient
  readonly protocol: string
  constructor(client: MemoryClient, protocol: string) {
    this.client = client
    this.protocol = protocol
  }
  get bufferedAmount(): number {
    return this.client.inboxBytes
  }
  send(data: string | Uint8Array): void {
    const client = this.client
    // Frames sent before the client saw `open` wait for it.
    if (client.readyState > 1) return
    client.inbox.push(typeof data === "string" ? data : decoder.decode(data))
    client.inboxBytes += byteLength(data)
    client.scheduleFlush()
  }
  close(code: number, reason: string): void {
    this.client.closeFromServer(code, reason)
  }
  terminate(): void {
    this.client.finish(1006, "")
  }
  ping(): boolean {
    const client = this.client
    if (client.readyState === 1 && !client.frozen) queueMicrotask(() => client.server?.onPong())
    return true
  }
  cork(): void {}
  uncork(): void {}
  pause(): void {
    this.client.serverPaused = true
  }
  resume(): void {
    const client = this.client
    client.serverPaused = false
    const waiting = client.serverInbox
    client.serverInbox = []
    for (const text of waiting) client.deliverToServer(text)
  }
  listen(listener: Listener): void {
    this.client.server = listener
  }
}
