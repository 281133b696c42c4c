/**
 * Testing channels in memory: `server` runs an app's web handler with the test's own services (its
 * `TestClock` moves the app's heartbeats and timeouts) and hands out typed clients and raw frame
 * connections that go through it; `validFrames`, `invalidFrames`, `frames` and `serverFrames` are
 * fast-check arbitraries derived from a channel's Schemas; `slowConsumer` reads a socket by a
 * script so the outbound queue's overflow policy can be tested; `neverCrashes` is the ready-made
 * property that no sequence of frames breaks the server. Imported by path (`@strata/ws/Testing`)
 * because it needs the optional `fast-check` peer.
 *
 * @since 0.1.0
 */
import * as App from "@strata/core/App"
import * as Arbitraries from "@strata/core/Arbitraries"
import * as Property from "@strata/core/Property"
import type * as Router from "@strata/core/Router"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import type * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as HttpEffect from "effect/http/HttpEffect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as TestClock from "effect/testing/TestClock"
import * as fc from "fast-check"
import type * as Channel from "./Channel.ts"
import * as Client from "./Client.ts"
import * as Hub from "./Hub.ts"
import * as Protocol from "./Protocol.ts"
import * as Transport from "./Transport.ts"

// ---------------------------------------------------------------------------------------------
// Raw connections
// ---------------------------------------------------------------------------------------------

/**
 * The connection closed while a frame was awaited.
 *
 * @category errors
 */
export class ConnectionClosed extends Data.TaggedError("ConnectionClosed")<{
  readonly code: number
  readonly reason: string
}> {
  override get message(): string {
    return `the connection closed with ${this.code} ${JSON.stringify(this.reason)} while a frame was awaited`
  }
}

/**
 * How a connection closed.
 *
 * @category models
 */
export interface Closed {
  readonly code: number
  readonly reason: string
}

/**
 * A frame-level connection: it sends frames exactly as given (also ones the typed client would
 * never send) and records every frame the server sends, so the protocol itself is under test.
 *
 * @category models
 */
export interface RawConnection<
  C extends Channel.Any,
  S extends Transport.WebSocketLike = Transport.MemoryWebSocket
> {
  readonly channel: C
  /** The client end of the socket; in memory, with `pause`/`resume`/`freeze`/`drop`. */
  readonly socket: S
  /** Every frame received so far, in order (text that is no frame is kept as a string). */
  readonly frames: ReadonlyArray<Protocol.ServerFrame | string>
  /** How the connection closed, once it did (a refused upgrade closes with 1006). */
  readonly closed: Closed | undefined
  /** Sends a frame (an object is sent as its JSON) or any text. Ignored once closed. */
  readonly send: (frame: Protocol.ClientFrame | string) => void
  /** Sends a message of the channel's client schema, encoded as the typed client would. */
  readonly sendMessage: (message: Channel.ClientMessage<C>) => void
  /**
   * The next frame, after those already taken by `next`/`nextMessage`, that `match` accepts
   * (frames it skips are taken too). Fails with `ConnectionClosed` if the connection closes first.
   */
  readonly next: (
    match?: (frame: Protocol.ServerFrame) => boolean
  ) => Effect.Effect<Protocol.ServerFrame, ConnectionClosed>
  /** The next message of the server schema (`m` frames, decoded) that `match` accepts. */
  readonly nextMessage: (
    match?: (message: Channel.ServerMessage<C>) => boolean
  ) => Effect.Effect<Channel.ServerMessage<C>, ConnectionClosed>
  /** Waits until the connection closed. */
  readonly awaitClose: Effect.Effect<Closed>
  /** Closes from the client side and waits until it closed. */
  readonly close: (code?: number, reason?: string) => Effect.Effect<Closed>
}

/**
 * Options of a raw connection.
 *
 * @category models
 */
export interface ConnectOptions {
  /** The subprotocols offered; default the channel's own (`[channel.protocol]`). */
  readonly protocols?: ReadonlyArray<string> | undefined
}

const decodeMessage = (channel: Channel.Any, data: unknown): unknown => {
  const exit = channel.codecs.server.decode(data)
  if (Exit.isSuccess(exit)) return exit.value
  throw new Error(`the server sent a message its schema refuses: ${JSON.stringify(data)}`)
}

/**
 * Opens a raw connection with any WebSocket constructor (in memory, Node's, `ws`'s) and waits
 * until it opened or was refused; it is closed with the scope. `Server.connect` is the same on the
 * in-memory server.
 *
 * @example
 * ```ts
 * const raw = yield* Testing.connect(chat, WebSocket, "ws://127.0.0.1:3000/ws/chat?token=1")
 * raw.send({ t: "q", i: 1, n: "history", d: { room: "lobby" } })
 * expect(yield* raw.next((f) => f.t === "r")).toMatchObject({ i: 1, ok: ["hello", "world"] })
 * ```
 * @category constructors
 */
export const connect = <C extends Channel.Any, S extends Transport.WebSocketLike = Transport.WebSocketLike>(
  channel: C,
  WebSocket: new (url: string, protocols?: string | Array<string>) => S,
  url: string,
  options?: ConnectOptions
): Effect.Effect<RawConnection<C, S>, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<RawConnection<C, S>>((resume) => {
      const socket = new WebSocket(url, [...(options?.protocols ?? [channel.protocol])])
      const frames: Array<Protocol.ServerFrame | string> = []
      let taken = 0
      let closed: Closed | undefined
      const wake = new Set<() => void>()
      const notify = () => {
        for (const look of Array.from(wake)) look()
      }
      const awaitClose = Effect.callback<Closed>((resumeClose) => {
        const look = () => {
          if (closed === undefined) return
          wake.delete(look)
          resumeClose(Effect.succeed(closed))
        }
        wake.add(look)
        look()
        return Effect.sync(() => void wake.delete(look))
      })
      const next = (match: (frame: Protocol.ServerFrame) => boolean = () => true) =>
        Effect.callback<Protocol.ServerFrame, ConnectionClosed>((resumeFrame) => {
          const look = () => {
            while (taken < frames.length) {
              const frame = frames[taken++]!
              if (typeof frame !== "string" && match(frame)) {
                wake.delete(look)
                return resumeFrame(Effect.succeed(frame))
              }
            }
            if (closed !== undefined) {
              wake.delete(look)
              resumeFrame(Effect.fail(new ConnectionClosed(closed)))
            }
          }
          wake.add(look)
          look()
          return Effect.sync(() => void wake.delete(look))
        })
      const send = (frame: Protocol.ClientFrame | string) => {
        if (socket.readyState === 1) socket.send(typeof frame === "string" ? frame : JSON.stringify(frame))
      }
      const raw: RawConnection<C, S> = {
        channel,
        socket,
        frames,
        get closed() {
          return closed
        },
        send,
        sendMessage: (message) => {
          const exit = channel.codecs.client.encode(message)
          if (Exit.isFailure(exit)) throw new Error(`the message does not encode: ${String(exit.cause)}`)
          send(`{"t":"m","d":${JSON.stringify(exit.value)}}`)
        },
        next,
        nextMessage: (match = () => true) =>
          Effect.map(
            next((frame) => frame.t === "m" && match(decodeMessage(channel, frame.d))),
            (frame) => decodeMessage(channel, (frame as { readonly d: unknown }).d)
          ),
        awaitClose,
        close: (code, reason) =>
          Effect.suspend(() => {
            if (closed === undefined && socket.readyState < 2) socket.close(code, reason)
            return awaitClose
          })
      }
      socket.addEventListener("message", (event: { readonly data: unknown }) => {
        const text = String(event.data)
        frames.push(Protocol.parseServerFrame(text) ?? text)
        notify()
      })
      socket.addEventListener("open", () => resume(Effect.succeed(raw)))
      socket.addEventListener("close", (event: { readonly code: number; readonly reason: string }) => {
        closed = { code: event.code, reason: event.reason }
        notify()
        resume(Effect.succeed(raw))
      })
    }),
    (raw) => Effect.sync(() => raw.socket.readyState < 2 && raw.socket.close())
  )

// ---------------------------------------------------------------------------------------------
// The in-memory server
// ---------------------------------------------------------------------------------------------

/**
 * Options of a typed client of the in-memory server.
 *
 * @category models
 */
export type ClientOptions = Omit<Client.Options, "url" | "WebSocket" | "fetch"> & {
  /** Headers of the upgrade request and of the client's probe (a session cookie, …). */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/**
 * Options of a raw connection to the in-memory server.
 *
 * @category models
 */
export interface ServerConnectOptions extends ConnectOptions {
  /** Headers of the upgrade request (a session cookie, …). */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/**
 * An app running in memory under the test's services.
 *
 * @category models
 */
export interface Server {
  /** The app's web handler. */
  readonly handler: (request: Request) => Promise<Response>
  /** A `fetch` through the handler (paths are resolved against `baseUrl`). */
  readonly fetch: (url: string, init?: RequestInit) => Promise<Response>
  /** In-memory WebSockets that connect through the handler. */
  readonly WebSocket: Transport.WebSocketConstructor
  /** Every client socket made so far (typed clients' and raw ones), newest last. */
  readonly sockets: ReadonlyArray<Transport.MemoryWebSocket>
  /** The app's hub (its metrics, `shutdown`). */
  readonly hub: Hub.Hub["Service"]
  /** The WebSocket URL of a path (`/ws/chat` → `ws://test/ws/chat`). */
  readonly url: (path: string) => string
  /** A typed client of a channel at a path; it starts connecting (await `client.awaitOpen`). */
  readonly client: <C extends Channel.Any>(
    channel: C,
    path: string,
    options?: ClientOptions
  ) => Effect.Effect<Client.Client<C>, never, Scope.Scope>
  /** A raw frame-level connection; resolves once it opened or was refused. */
  readonly connect: <C extends Channel.Any>(
    channel: C,
    path: string,
    options?: ServerConnectOptions
  ) => Effect.Effect<RawConnection<C>, never, Scope.Scope>
}

/**
 * Options of `server`.
 *
 * @category models
 */
export interface ServerOptions extends App.Options {
  /** The origin paths are resolved against; default `http://test`. */
  readonly baseUrl?: string | undefined
}

const withHeaders =
  (handler: (request: Request) => Promise<Response>, headers: Readonly<Record<string, string>> | undefined) =>
  (request: Request): Promise<Response> => {
    if (headers === undefined) return handler(request)
    const merged = new Headers(request.headers)
    for (const [name, value] of Object.entries(headers)) merged.set(name, value)
    return handler(new Request(request, { headers: merged }))
  }

/**
 * Runs the app in memory under the caller's services: the handler reads the hub and every other
 * app service from the calling Effect's context, so the test's `TestClock` drives heartbeats, idle
 * and request timeouts, and `Property.effect` gives each case a fresh hub. Upgrades go through the
 * route's middleware exactly as over a socket.
 *
 * @example
 * ```ts
 * it.effect("echoes", () =>
 *   Effect.gen(function* () {
 *     const server = yield* Testing.server(app)
 *     const client = yield* server.client(chat, "/ws/chat?token=1")
 *     yield* client.awaitOpen
 *     yield* client.send({ _tag: "Echo", text: "hi" })
 *   }).pipe(Effect.provide(Layer.mergeAll(Hub.layer(), UsersLive))))
 * ```
 * @category constructors
 */
export const server = <G extends Router.Any>(
  app: G & App.ServeCheck<G>,
  options?: ServerOptions
): Effect.Effect<Server, Router.Router.LayerError<G>, Scope.Scope | Hub.Hub | App.Services<G>> =>
  Effect.gen(function* () {
    const memory = Transport.memory()
    const httpEffect = yield* HttpRouter.toHttpEffect(App.layer<G>(app, options))
    const context = yield* Effect.context<Hub.Hub | App.Services<G>>()
    // The router's per-request requirements are the app services of `G`, which `context` holds;
    // for a generic `G` the compiler cannot see that, so the handler is typed by hand.
    const run = HttpEffect.toWebHandlerWith(Context.add(context, Transport.Upgrader, memory.upgrader))(
      httpEffect as Effect.Effect<never, unknown, never>
    ) as (request: Request) => Promise<Response>
    const base = options?.baseUrl ?? "http://test"
    const httpUrl = (path: string) => (/^[a-z]+:\/\//i.test(path) ? path : `${base}${path}`)
    const url = (path: string) => httpUrl(path).replace(/^http/, "ws")
    const fetchWith = (headers: Readonly<Record<string, string>> | undefined) => {
      const fetch = memory.fetch(withHeaders(run, headers))
      return (target: string, init?: RequestInit) => fetch(httpUrl(target), init)
    }
    const self: Server = {
      handler: run,
      fetch: fetchWith(undefined),
      WebSocket: memory.WebSocket(run),
      sockets: memory.sockets,
      hub: yield* Hub.Hub,
      url,
      client: (channel, path, clientOptions) => {
        const { headers, ...rest } = clientOptions ?? {}
        return Client.make(channel, {
          ...rest,
          url: url(path),
          WebSocket: memory.WebSocket(withHeaders(run, headers)),
          fetch: fetchWith(headers)
        })
      },
      connect: (channel, path, connectOptions) =>
        connect(
          channel,
          memory.WebSocket(withHeaders(run, connectOptions?.headers)) as new (
            url: string,
            protocols?: string | Array<string>
          ) => Transport.MemoryWebSocket,
          url(path),
          connectOptions
        )
    }
    return self
  })

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/**
 * A generator given for part of a channel: an arbitrary of the schema's values (the `Type` side),
 * or a function of the one derived from the schema (to clamp a count, pick known room ids, …).
 * Values are encoded with the channel's schema, as the typed client would.
 *
 * @category models
 */
export type Override<A> = fc.Arbitrary<A> | ((derived: fc.Arbitrary<A>) => fc.Arbitrary<A>)

/**
 * The kinds of client frames.
 *
 * @category models
 */
export type FrameKind = "message" | "request" | "join" | "leave" | "presence" | "heartbeat"

/**
 * Options of the frame arbitraries.
 *
 * @category models
 */
export interface FrameOptions<C extends Channel.Any> {
  /** The client messages (derived from the client schema). */
  readonly message?: Override<Channel.ClientMessage<C>> | undefined
  /** The input of each request (derived from its request schema). */
  readonly requests?:
    { readonly [K in Channel.RequestName<C>]?: Override<Channel.RequestOf<C, K>> } | undefined
  /** The keys of each topic (derived from its key schema). */
  readonly keys?: { readonly [T in Channel.TopicName<C>]?: Override<Channel.TopicKey<C, T>> } | undefined
  /** Request ids; default small integers and short strings, so that ids repeat now and then. */
  readonly requestId?: fc.Arbitrary<Protocol.RequestId> | undefined
  /** The kinds to generate; default every kind the channel has. */
  readonly kinds?: ReadonlyArray<FrameKind> | undefined
}

// The encoded (JSON) form of values of a schema, or of the given override.
const encodedOf = (
  schema: Channel.AnySchema,
  override: Override<unknown> | undefined,
  what: string
): fc.Arbitrary<unknown> => {
  const json = Schema.toCodecJson(schema)
  if (override === undefined) return Arbitraries.arbitraryEncoded(json)
  const arbitrary = typeof override === "function" ? override(Arbitraries.arbitrary(schema)) : override
  const encode = Schema.encodeUnknownExit(json)
  return arbitrary.map((value) => {
    const exit = encode(value)
    if (Exit.isSuccess(exit)) return exit.value
    throw new Error(`the arbitrary given for ${what} made a value its schema cannot encode: ${String(value)}`)
  })
}

const topicsOf = (channel: Channel.Any) => Object.entries(channel.definition.topics ?? {})
const requestsOf = (channel: Channel.Any) => Object.entries(channel.definition.requests ?? {})

const defaultRequestId: fc.Arbitrary<Protocol.RequestId> = fc.oneof(
  fc.integer({ min: 0, max: 1000 }),
  fc.string({ minLength: 1, maxLength: 12 })
)

const position = fc.record({ e: fc.string({ maxLength: 16 }), o: fc.nat() })

const nonEmpty = <A>(arbitraries: ReadonlyArray<fc.Arbitrary<A>>, what: string): fc.Arbitrary<A> => {
  if (arbitraries.length === 0) throw new Error(`no ${what} to generate`)
  return fc.oneof(...arbitraries)
}

/**
 * Client frames the channel accepts, derived from its Schemas: messages of the client schema,
 * each request with an input of its schema, joins (sometimes resuming from a position), leaves and
 * presence queries of each topic with keys of the topic's key schema, and heartbeats. Each one
 * parses (`Protocol.parseClientFrame`) and decodes; the server may still refuse what the app
 * refuses (a `Denied` join, a typed request error).
 *
 * @example
 * ```ts
 * const frames = Testing.validFrames(chat, {
 *   message: (derived) => derived.filter((m) => m._tag !== "Crash"),
 *   keys: { room: fc.constantFrom(roomId("lobby"), roomId("secret")) }
 * })
 * ```
 * @category arbitraries
 */
export const validFrames = <C extends Channel.Any>(
  channel: C,
  options?: FrameOptions<C>
): fc.Arbitrary<Protocol.ClientFrame> => {
  const kinds = new Set<FrameKind>(
    options?.kinds ?? ["message", "request", "join", "leave", "presence", "heartbeat"]
  )
  const id = options?.requestId ?? defaultRequestId
  const overrides = options as
    | {
        readonly message?: Override<unknown>
        readonly requests?: Readonly<Record<string, Override<unknown> | undefined>>
        readonly keys?: Readonly<Record<string, Override<unknown> | undefined>>
      }
    | undefined
  const arbitraries: Array<fc.Arbitrary<Protocol.ClientFrame>> = []
  if (kinds.has("message")) {
    arbitraries.push(
      encodedOf(channel.definition.client, overrides?.message, "the client messages").map((d) => ({
        t: "m",
        d
      }))
    )
  }
  if (kinds.has("request")) {
    for (const [name, definition] of requestsOf(channel)) {
      const input = encodedOf(definition.request, overrides?.requests?.[name], `request ${name}`)
      arbitraries.push(fc.record({ i: id, d: input }).map(({ i, d }) => ({ t: "q", i, n: name, d })))
    }
  }
  for (const [name, definition] of topicsOf(channel)) {
    const key = encodedOf(definition.key, overrides?.keys?.[name], `the keys of topic ${name}`)
    if (kinds.has("join")) {
      arbitraries.push(
        fc
          .record({ k: key, f: fc.option(position, { nil: undefined, freq: 4 }) })
          .map(({ k, f }) => (f === undefined ? { t: "j", n: name, k } : { t: "j", n: name, k, f }))
      )
    }
    if (kinds.has("leave")) arbitraries.push(key.map((k) => ({ t: "l", n: name, k })))
    if (kinds.has("presence")) {
      arbitraries.push(fc.record({ i: id, k: key }).map(({ i, k }) => ({ t: "p", i, n: name, k })))
    }
  }
  if (kinds.has("heartbeat")) arbitraries.push(fc.constantFrom<Protocol.ClientFrame>({ t: "h" }, { t: "H" }))
  return nonEmpty(arbitraries, `frames of the kinds ${[...kinds].join(", ")} in channel ${channel.name}`)
}

/**
 * Why the server refuses a client frame of this channel (the reason it would give), or
 * `undefined` when the frame parses and every part decodes with the channel's Schemas. What the
 * app's handlers refuse (a `Denied` join) is not known here.
 *
 * @category arbitraries
 */
export const refusal = (channel: Channel.Any, frame: Protocol.ClientFrame | string): string | undefined => {
  const parsed = Protocol.parseClientFrame(typeof frame === "string" ? frame : JSON.stringify(frame))
  if (typeof parsed === "string") return parsed
  const codecs = channel.codecs
  const fails = (exit: Exit.Exit<unknown, unknown>, what: string) => (Exit.isFailure(exit) ? what : undefined)
  switch (parsed.t) {
    case "m":
      return fails(codecs.client.decode(parsed.d), "the message does not decode")
    case "q": {
      const request = Object.hasOwn(codecs.requests, parsed.n) ? codecs.requests[parsed.n] : undefined
      if (request === undefined) return `the channel has no request ${JSON.stringify(parsed.n)}`
      return fails(request.request.decode(parsed.d), "the request does not decode")
    }
    case "j":
    case "l":
    case "p": {
      const topic = Object.hasOwn(codecs.topics, parsed.n) ? codecs.topics[parsed.n] : undefined
      if (topic === undefined) return `the channel has no topic ${JSON.stringify(parsed.n)}`
      return fails(topic.key.decode(parsed.k), "the key does not decode")
    }
    case "h":
    case "H":
      return undefined
  }
}

/**
 * Options of `invalidFrames`.
 *
 * @category models
 */
export interface InvalidFrameOptions<C extends Channel.Any> extends FrameOptions<C> {
  /**
   * The route's `maxMessageSize`: when given, frames a byte longer are generated too (the
   * connection is closed with 1009).
   */
  readonly maxMessageSize?: number | undefined
}

const frameKinds = new Set(["m", "q", "j", "l", "p", "h", "H"])

/**
 * Client frames the server refuses, as text: valid frames with one field replaced by any JSON
 * value or removed, unknown requests and topics, messages of other shapes, wrong envelopes
 * (unknown kinds, arrays, scalars), text that is not JSON, and, with `maxMessageSize`, oversize
 * frames. Every one gets a visible refusal: an `x` frame, a failed `r` answer or a refused join
 * (`j` with `no`), or a close with a typed code, depending on the route's `invalidFrames` policy.
 * (A leave of an unknown topic is ignored by the server, so none is generated.)
 *
 * @example
 * ```ts
 * Property.effect([Testing.invalidFrames(chat)], ([text]) => …)
 * ```
 * @category arbitraries
 */
export const invalidFrames = <C extends Channel.Any>(
  channel: C,
  options?: InvalidFrameOptions<C>
): fc.Arbitrary<string> => {
  const valid = validFrames(channel, options)
  const id = options?.requestId ?? defaultRequestId
  const topicNames = new Set(topicsOf(channel).map(([name]) => name))
  const requestNames = new Set(requestsOf(channel).map(([name]) => name))
  const mutated = fc
    .tuple(valid, fc.nat(), fc.option(fc.jsonValue(), { nil: undefined }))
    .map(([frame, index, value]) => {
      const keys = Object.keys(frame)
      return JSON.stringify({ ...frame, [keys[index % keys.length]!]: value })
    })
  const unknownName = (known: ReadonlySet<string>) =>
    fc.string({ maxLength: 12 }).filter((name) => !known.has(name))
  const shapes = [
    { arbitrary: mutated, weight: 6 },
    { arbitrary: fc.jsonValue().map((d) => JSON.stringify({ t: "m", d })), weight: 2 },
    {
      arbitrary: fc
        .record({ i: id, n: unknownName(requestNames), d: fc.jsonValue() })
        .map((f) => JSON.stringify({ t: "q", ...f })),
      weight: 1
    },
    {
      arbitrary: fc
        .record({ t: fc.constantFrom("j", "p"), i: id, n: unknownName(topicNames), k: fc.jsonValue() })
        .map((f) => JSON.stringify(f)),
      weight: 1
    },
    {
      arbitrary: fc
        .oneof(
          fc.record(
            { t: fc.string({ maxLength: 3 }).filter((t) => !frameKinds.has(t)) },
            { requiredKeys: [] }
          ),
          fc.array(fc.jsonValue(), { maxLength: 3 }),
          fc.oneof(fc.integer(), fc.string(), fc.boolean(), fc.constant(null))
        )
        .map((v) => JSON.stringify(v)),
      weight: 2
    },
    {
      arbitrary: fc.oneof(
        fc.string(),
        fc.constantFrom("", "{", "}", "[", '{"t":', '{"t":"m"', "undefined", "NaN", "\u0000", "\ud800")
      ),
      weight: 2
    },
    ...(options?.maxMessageSize === undefined
      ? []
      : [
          {
            arbitrary: fc
              .nat({ max: 64 })
              .map((extra) => JSON.stringify({ t: "m", d: "x".repeat(options.maxMessageSize! + 1 + extra) })),
            weight: 1
          }
        ])
  ]
  return fc.oneof(...shapes).filter((text) => {
    if (refusal(channel, text) === undefined) return false
    // The server ignores a leave it cannot read: no refusal to see.
    const parsed = Protocol.parseClientFrame(text)
    return typeof parsed === "string" || parsed.t !== "l"
  })
}

/**
 * Any client frames: mostly valid ones, with invalid ones mixed in (`invalidWeight` of 10, 3 by
 * default), as text or frame objects ready for `RawConnection.send`.
 *
 * @category arbitraries
 */
export const frames = <C extends Channel.Any>(
  channel: C,
  options?: InvalidFrameOptions<C> & { readonly invalidWeight?: number | undefined }
): fc.Arbitrary<Protocol.ClientFrame | string> => {
  const invalid = options?.invalidWeight ?? 3
  return fc.oneof(
    { arbitrary: validFrames(channel, options), weight: 10 - invalid },
    { arbitrary: invalidFrames(channel, options), weight: invalid }
  )
}

const failureTags: ReadonlyArray<Protocol.RequestFailureTag> = [
  "Timeout",
  "InvalidRequest",
  "UnknownRequest",
  "Internal",
  "Busy"
]
const refusalTags: ReadonlyArray<Protocol.JoinRefusalTag> = [
  "Denied",
  "UnknownTopic",
  "InvalidKey",
  "Unavailable"
]

/**
 * Server frames of the channel, derived from its Schemas, for testing code that reads them (a
 * client of another language's port, a UI's reducer): messages of the server schema, answers to
 * each request (`ok`, typed `err`, `fail`), events, join answers and refusals, leaves and presence
 * lists of each topic, refusals of frames, and heartbeats.
 *
 * @category arbitraries
 */
export const serverFrames = <C extends Channel.Any>(
  channel: C,
  options?: { readonly requestId?: fc.Arbitrary<Protocol.RequestId> | undefined }
): fc.Arbitrary<Protocol.ServerFrame> => {
  const id = options?.requestId ?? defaultRequestId
  const message = fc.string({ maxLength: 40 })
  const epoch = fc.string({ minLength: 1, maxLength: 16 })
  const arbitraries: Array<fc.Arbitrary<Protocol.ServerFrame>> = [
    encodedOf(channel.definition.server, undefined, "the server messages").map((d) => ({ t: "m", d })),
    fc
      .record({ _tag: fc.constantFrom("InvalidFrame" as const, "InvalidMessage" as const), message })
      .map((reason) => ({ t: "x", reason })),
    fc.constantFrom<Protocol.ServerFrame>({ t: "h" }, { t: "H" })
  ]
  for (const [name, definition] of requestsOf(channel)) {
    arbitraries.push(
      fc
        .record({ i: id, ok: encodedOf(definition.response, undefined, `the answers of ${name}`) })
        .map(({ i, ok }) => ({ t: "r", i, ok })),
      fc
        .record({ i: id, fail: fc.record({ _tag: fc.constantFrom(...failureTags), message }) })
        .map(({ i, fail }) => ({ t: "r", i, fail }))
    )
    if (definition.error !== undefined) {
      arbitraries.push(
        fc
          .record({ i: id, err: encodedOf(definition.error, undefined, `the errors of ${name}`) })
          .map(({ i, err }) => ({ t: "r", i, err }))
      )
    }
  }
  for (const [name, definition] of topicsOf(channel)) {
    const key = encodedOf(definition.key, undefined, `the keys of topic ${name}`)
    const meta =
      definition.presence === undefined
        ? fc.constant(null)
        : encodedOf(definition.presence, undefined, `the presence of topic ${name}`)
    arbitraries.push(
      fc
        .record({
          k: key,
          o: fc.nat(),
          ep: epoch,
          d: encodedOf(definition.payload, undefined, `the events of topic ${name}`)
        })
        .map(({ k, o, ep, d }) => ({ t: "e", n: name, k, o, ep, d })),
      fc
        .record({
          k: key,
          ok: fc.record(
            {
              r: fc.constantFrom<Protocol.JoinResult>("fresh", "recovered", "gap"),
              e: epoch,
              o: fc.nat(),
              missed: fc.nat()
            },
            { requiredKeys: ["r", "e", "o"] }
          )
        })
        .map(({ k, ok }) => ({ t: "j", n: name, k, ok })),
      fc
        .record({ k: key, no: fc.record({ _tag: fc.constantFrom(...refusalTags), message }) })
        .map(({ k, no }) => ({ t: "j", n: name, k, no })),
      key.map((k) => ({ t: "l", n: name, k })),
      fc
        .record({
          i: id,
          m: fc.array(fc.record({ id: fc.string({ minLength: 1, maxLength: 12 }), meta }), { maxLength: 4 })
        })
        .map(({ i, m }) => ({ t: "P", i, m }))
    )
  }
  return fc.oneof(...arbitraries)
}

// ---------------------------------------------------------------------------------------------
// The slow consumer
// ---------------------------------------------------------------------------------------------

/**
 * One step of a slow consumer's script:
 *
 * - `{ read: n }`: read up to `n` frames, those that arrive before the socket goes quiet (the
 *   server writes more as room frees up), then stop reading
 * - `{ read: "all" }`: read until the socket goes quiet, then stop
 * - `{ pauseFor: "5 seconds" }`: read nothing for that long on the Effect clock (under `TestClock`,
 *   until the test adjusts it)
 * - `{ readEvery: "100 millis", times: 10 }`: wait the interval, read one frame; `times` times
 *
 * @category models
 */
export type ReadStep =
  | { readonly read: number | "all" }
  | { readonly pauseFor: Duration.Input }
  | { readonly readEvery: Duration.Input; readonly times: number }

/**
 * What a slow consumer did.
 *
 * @category models
 */
export interface SlowConsumerReport {
  /** Frames it let through while the script ran. */
  readonly read: number
  /** Whether the connection was closed when the script ended. */
  readonly closed: boolean
}

const settle = Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 0)))

// Lets through up to `n` frames: those that arrive before the socket goes quiet. Reading frees
// room, the server writes what it queued, and so on, so it waits until a round brings nothing.
const readUpTo = (socket: Transport.MemoryWebSocket, n: number): Effect.Effect<number> =>
  Effect.suspend(() => {
    if (n <= 0 || socket.readyState >= 2) return Effect.succeed(0)
    let count = 0
    // Added after the reader's own listeners, so they see the frame before the socket stops.
    const onMessage = () => {
      if (++count >= n) socket.pause()
    }
    socket.addEventListener("message", onMessage)
    socket.resume()
    const loop: Effect.Effect<void> = Effect.flatMap(settle, () => {
      if (count >= n || socket.readyState >= 2) return Effect.void
      const before = count
      return Effect.flatMap(settle, () => (count === before ? Effect.void : loop))
    })
    return loop.pipe(
      Effect.ensuring(
        Effect.sync(() => {
          socket.pause()
          socket.removeEventListener("message", onMessage)
        })
      ),
      Effect.map(() => count)
    )
  })

/**
 * Reads a socket by a script, so the server's outbound queue fills and its overflow policy acts:
 * the socket stops reading at once, the script runs in a fiber of the scope, and when it ends the
 * socket reads normally again. Frames pile up on the server's side as they would in a slow
 * client's network buffer; set the route's `outbound.highWaterMark` and `limit` low to reach the
 * policy with few frames. Give it the socket of a raw connection (`raw.socket`) or of a typed
 * client (`server.sockets`).
 *
 * @example
 * ```ts
 * const raw = yield* server.connect(chat, "/ws/chat?token=1")
 * const consumer = yield* Testing.slowConsumer(raw.socket, [{ read: 1 }, { pauseFor: "5 seconds" }, { read: "all" }])
 * raw.sendMessage({ _tag: "Flood", count: 50 })
 * yield* TestClock.adjust("5 seconds")
 * const report = yield* Fiber.join(consumer)
 * ```
 * @category constructors
 */
export const slowConsumer = (
  socket: Transport.MemoryWebSocket,
  script: ReadonlyArray<ReadStep>
): Effect.Effect<Fiber.Fiber<SlowConsumerReport>, never, Scope.Scope> =>
  Effect.suspend(() => {
    socket.pause()
    const run = Effect.gen(function* () {
      let read = 0
      for (const step of script) {
        if (socket.readyState >= 2) break
        if ("read" in step) read += yield* readUpTo(socket, step.read === "all" ? Infinity : step.read)
        else if ("pauseFor" in step) yield* Effect.sleep(step.pauseFor)
        else {
          for (let i = 0; i < step.times && socket.readyState < 2; i++) {
            yield* Effect.sleep(step.readEvery)
            read += yield* readUpTo(socket, 1)
          }
        }
      }
      return { read, closed: socket.readyState >= 2 }
    }).pipe(Effect.ensuring(Effect.sync(() => socket.resume())))
    return Effect.forkScoped(run)
  })

// ---------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------

const typedCloses = new Set<number>([
  Protocol.CloseCode.Normal,
  Protocol.CloseCode.UnsupportedData,
  Protocol.CloseCode.MessageTooBig,
  Protocol.CloseCode.InvalidFrame,
  Protocol.CloseCode.InvalidMessage,
  Protocol.CloseCode.TooManyInvalidFrames,
  Protocol.CloseCode.HeartbeatTimeout,
  Protocol.CloseCode.IdleTimeout,
  Protocol.CloseCode.SlowConsumer,
  Protocol.CloseCode.ServerClosed
])

/**
 * Is this a close code a server may end a connection with under bad input: the channel's typed
 * codes, the size limit, a normal close, or an application's code (4100–4999)? Not 1006 (cut
 * off), 1011 (the server failed) or a code without a name.
 *
 * @category assertions
 */
export const isTypedClose = (code: number): boolean => typedCloses.has(code) || (code >= 4100 && code <= 4999)

/**
 * Options of `neverCrashes`.
 *
 * @category models
 */
export interface NeverCrashesOptions<C extends Channel.Any> extends Property.Options {
  readonly channel: C
  /** Where the channel is: a path with its query (`/ws/chat?token=1`) or a whole URL. */
  readonly url: string
  /** Headers of the upgrades (a session cookie), or an Effect that finds them per case (a login). */
  readonly headers?:
    | Readonly<Record<string, string>>
    | ((server: Server) => Effect.Effect<Readonly<Record<string, string>>, unknown>)
    | undefined
  /** What is sent on one connection; default up to 25 of `frames(channel)`. */
  readonly frames?: fc.Arbitrary<ReadonlyArray<Protocol.ClientFrame | string>> | undefined
  /** How far the clock moves after the frames, so waits and timeouts run out; default 1 minute. */
  readonly settle?: Duration.Input | undefined
  /** The close codes allowed; default `isTypedClose`. */
  readonly allowClose?: ((code: number) => boolean) | undefined
  /** Real milliseconds one case may take; default 10 000. */
  readonly timeout?: number | undefined
}

/**
 * The property that no sequence of frames breaks the server: for each generated sequence, a
 * connection sent it either still answers a heartbeat or was closed with an allowed code, every
 * frame it got is a frame of the protocol, and a fresh connection still opens and answers. Each
 * case runs the app in memory under a fresh `TestClock` and a fresh build of `layer`.
 *
 * @example
 * ```ts
 * it("no frames crash the server", () =>
 *   Testing.neverCrashes(app, Layer.mergeAll(Hub.layer(), UsersLive), { channel: chat, url: "/ws/chat?token=1" }))
 * ```
 * @category assertions
 */
export const neverCrashes = <G extends Router.Any, C extends Channel.Any, LE = never>(
  app: G & App.ServeCheck<G>,
  layer: Layer.Layer<Hub.Hub | App.Services<G>, LE, never>,
  options: NeverCrashesOptions<C>
): Promise<void> => {
  const arbitrary = options.frames ?? fc.array(frames(options.channel), { maxLength: 25 })
  const allow = options.allowClose ?? isTypedClose
  const body = ([sequence]: [ReadonlyArray<Protocol.ClientFrame | string>]) =>
    Effect.scoped(
      Effect.gen(function* () {
        const s = yield* server<G>(app)
        const headers = typeof options.headers === "function" ? yield* options.headers(s) : options.headers
        const open = () => s.connect(options.channel, options.url, { headers })
        const raw = yield* open()
        if (raw.closed !== undefined) {
          return yield* Effect.die(
            new Error(`the connection was refused: ${JSON.stringify(raw.socket.refused ?? raw.closed)}`)
          )
        }
        for (const frame of sequence) raw.send(frame)
        yield* settle
        yield* TestClock.adjust(options.settle ?? "1 minute")
        yield* settle
        // Read again: the frames and the clock may have closed it.
        const closed = closedNow(raw)
        if (closed === undefined) {
          raw.send({ t: "h" })
          yield* raw.next((frame) => frame.t === "H")
        } else if (!allow(closed.code)) {
          return yield* Effect.die(
            new Error(`the connection closed with ${closed.code} ${JSON.stringify(closed.reason)}`)
          )
        }
        const strange = raw.frames.find((frame) => typeof frame === "string" || !serverKinds.has(frame.t))
        if (strange !== undefined) {
          return yield* Effect.die(
            new Error(`the server sent a frame of no kind: ${JSON.stringify(strange)}`)
          )
        }
        const fresh = yield* open()
        if (fresh.closed !== undefined) {
          return yield* Effect.die(
            new Error(`a fresh connection was refused: ${JSON.stringify(fresh.closed)}`)
          )
        }
        fresh.send({ t: "h" })
        yield* fresh.next((frame) => frame.t === "H")
      })
    )
  // `Property.effect` asks for a layer exactly when the body needs services; the body's services
  // are `layer`'s output, which the compiler cannot match against its conditional type for a
  // generic app.
  const run = Property.effect as unknown as (
    arbitraries: readonly [fc.Arbitrary<ReadonlyArray<Protocol.ClientFrame | string>>],
    body: (values: [ReadonlyArray<Protocol.ClientFrame | string>]) => Effect.Effect<unknown, unknown, any>,
    options: Property.EffectOptions<any>
  ) => Promise<void>
  return run([arbitrary], body, {
    seed: options.seed,
    path: options.path,
    numRuns: options.numRuns,
    endOnFailure: options.endOnFailure,
    parameters: options.parameters,
    timeout: options.timeout,
    layer
  })
}

const closedNow = (raw: { readonly closed: Closed | undefined }): Closed | undefined => raw.closed

const serverKinds = new Set(["m", "r", "e", "j", "l", "P", "x", "h", "H"])
