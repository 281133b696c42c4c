/**
 * The typed client of a channel, for Node 22+ and browsers (on the global `WebSocket`): send
 * messages, make requests, subscribe to topics as Streams, and stay connected — it reconnects with
 * backoff and jitter, joins its topics again and resumes each from the last event it saw.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Channel from "./Channel.ts"
import * as Protocol from "./Protocol.ts"
import type * as Transport from "./Transport.ts"

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/**
 * Reconnection: the n-th attempt waits `min(maxDelay, initialDelay · factorⁿ⁻¹)`, of which a random
 * part (`jitter`, 0–1) is taken off, so clients cut off together do not come back together.
 *
 * @category models
 */
export interface ReconnectOptions {
  /** 250 ms. */
  readonly initialDelay?: Duration.Input | undefined
  /** 30 s. */
  readonly maxDelay?: Duration.Input | undefined
  /** 2. */
  readonly factor?: number | undefined
  /** 0.5: the delay is between half and all of the computed one. 1 is "full jitter". */
  readonly jitter?: number | undefined
  /** Attempts in a row before giving up (no limit). */
  readonly maxAttempts?: number | undefined
}

/**
 * Options of a client.
 *
 * @category models
 */
export interface Options {
  /** `ws://…` or `wss://…`. */
  readonly url: string
  /** The WebSocket constructor (the global one by default). */
  readonly WebSocket?: Transport.WebSocketConstructor | undefined
  /** Reconnection (on by default), or `false`. */
  readonly reconnect?: ReconnectOptions | false | undefined
  /** How long a request waits for its answer, including while reconnecting (10 s). */
  readonly requestTimeout?: Duration.Input | undefined
  /** Client heartbeats, to notice a dead server (a frame after 20 s of silence, 10 s to answer), or `false`. */
  readonly heartbeat?:
    { readonly interval: Duration.Input; readonly timeout: Duration.Input } | false | undefined
  /** Messages kept while disconnected, sent on reconnect (100); more fail with `OfflineQueueFull`. */
  readonly offlineQueue?: number | undefined
  /**
   * After a handshake that failed before opening, ask the server over HTTP why (browsers do not
   * show a refused upgrade's status): 400 (another protocol version), 401 or 403 end the client
   * with `Refused` instead of retrying. On when `fetch` exists.
   */
  readonly probe?: boolean | undefined
  /** The `fetch` the probe uses (the global one by default). */
  readonly fetch?: ((url: string, init?: RequestInit) => Promise<Response>) | undefined
}

/**
 * The state of the connection.
 *
 * @category models
 */
export type Status =
  | { readonly _tag: "Connecting"; readonly attempt: number }
  | { readonly _tag: "Open" }
  | {
      readonly _tag: "Reconnecting"
      readonly attempt: number
      /** Milliseconds until the next attempt. */
      readonly delay: number
      readonly reason: Protocol.CloseReason
    }
  | { readonly _tag: "Closed"; readonly reason: Protocol.CloseReason }
  | {
      /** The server refused the handshake: another protocol version (400), or not allowed (401, 403). */
      readonly _tag: "Refused"
      readonly status: number
      readonly error: string
      readonly message: string
    }

/**
 * What a topic subscription yields: `Joined` once the server confirmed the join (events published
 * from then on arrive), the events, and after a reconnect whether every missed event came back
 * (`Recovered`, followed by them) or some were lost (`Gap`).
 *
 * @category models
 */
export type Delivery<P> =
  | { readonly _tag: "Message"; readonly payload: P; readonly offset: number; readonly epoch: string }
  | { readonly _tag: "Joined"; readonly offset: number; readonly epoch: string }
  | { readonly _tag: "Recovered"; readonly replayed: number }
  | { readonly _tag: "Gap"; readonly missed: number | undefined }

/**
 * An event of any topic the connection is in.
 *
 * @category models
 */
export type TopicEvent<C extends Channel.Any> = {
  readonly [T in Channel.TopicName<C>]: {
    readonly topic: T
    readonly key: Channel.TopicKey<C, T>
    readonly payload: Channel.TopicPayload<C, T>
  }
}[Channel.TopicName<C>]

/**
 * A message could not be sent.
 *
 * @category errors
 */
export class ClientError extends Data.TaggedError("ClientError")<{
  readonly reason: "Closed" | "OfflineQueueFull" | "Encode"
  readonly message: string
}> {}

/**
 * A request got no typed answer: the server's reasons (`Timeout`, `InvalidRequest`,
 * `UnknownRequest`, `Internal`, `Busy`), or the connection's (`Disconnected` while it was on the
 * way, `Closed`).
 *
 * @category errors
 */
export class RequestError extends Data.TaggedError("RequestError")<{
  readonly reason: Protocol.RequestFailureTag | "Disconnected" | "Closed"
  readonly message: string
}> {}

/**
 * A topic could not be joined (or joined again after a reconnect).
 *
 * @category errors
 */
export class JoinError extends Data.TaggedError("JoinError")<{
  readonly reason: Protocol.JoinRefusalTag | "Closed"
  readonly message: string
}> {}

/**
 * A client of a channel.
 *
 * @category models
 */
export interface Client<C extends Channel.Any> {
  /** Sends a message of the client schema (kept while disconnected, up to `offlineQueue`). */
  readonly send: (message: Channel.ClientMessage<C>) => Effect.Effect<void, ClientError>
  /** Makes a request and waits for its typed answer or error. */
  readonly request: <K extends Channel.RequestName<C>>(
    name: K,
    request: Channel.RequestOf<C, K>,
    options?: { readonly timeout?: Duration.Input | undefined }
  ) => Effect.Effect<Channel.ResponseOf<C, K>, Channel.ErrorOf<C, K> | RequestError>
  /**
   * Joins a topic while the stream runs (and leaves when it ends); after a reconnect the topic is
   * joined again from the last event seen.
   */
  readonly subscribe: <T extends Channel.TopicName<C>>(
    topic: T,
    key: Channel.TopicKey<C, T>
  ) => Stream.Stream<Delivery<Channel.TopicPayload<C, T>>, JoinError>
  /** Who is in a topic the client joined. */
  readonly presence: <T extends Channel.TopicName<C>>(
    topic: T,
    key: Channel.TopicKey<C, T>
  ) => Effect.Effect<ReadonlyArray<Channel.Member<Channel.TopicPresence<C, T>>>, RequestError>
  /** Messages of the server schema. */
  readonly messages: Stream.Stream<Channel.ServerMessage<C>>
  /** Events of every topic the connection is in (also those the server joined it to). */
  readonly events: Stream.Stream<TopicEvent<C>>
  /** The current status, then each change. */
  readonly status: Stream.Stream<Status>
  /** The current status. */
  readonly currentStatus: Effect.Effect<Status>
  /** Waits until the connection is open (fails if the client ends first). */
  readonly awaitOpen: Effect.Effect<void, ClientError>
  /** Closes the connection for good. */
  readonly close: Effect.Effect<void>
}

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

interface Pending {
  readonly resume: (exit: Exit.Exit<unknown, unknown>) => void
  readonly decode: (frame: Protocol.ServerFrame) => Exit.Exit<unknown, unknown>
  sent: boolean
}

interface Subscription {
  readonly name: string
  /** The key as sent (its encoded JSON value) and as text. */
  readonly key: unknown
  readonly keyJson: string
  position: Protocol.Position | undefined
  readonly listeners: Set<Queue.Queue<Delivery<unknown>, JoinError | Cause.Done>>
  /** Joined on the current connection. */
  joined: boolean
}

const reconnectCodes = new Set<number>([
  Protocol.CloseCode.GoingAway,
  Protocol.CloseCode.Abnormal,
  1005,
  Protocol.CloseCode.MessageTooBig,
  Protocol.CloseCode.InternalError,
  1012,
  1013,
  1014,
  Protocol.CloseCode.HeartbeatTimeout,
  Protocol.CloseCode.SlowConsumer
])

const millis = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

class Core {
  readonly channel: Channel.Any
  readonly options: Options
  readonly clock: Clock.Clock
  status: Status = { _tag: "Connecting", attempt: 0 }
  ws: Transport.WebSocketLike | undefined = undefined
  open = false
  ended = false
  lastReceived = 0
  /** Frames received so far, on every connection (the heartbeat compares counts). */
  received = 0
  private nextId = 0
  private readonly pending = new Map<number, Pending>()
  private offline: Array<string> = []
  readonly subscriptions = new Map<string, Subscription>()
  readonly statusListeners = new Set<(status: Status) => void>()
  readonly messageListeners = new Set<Queue.Queue<unknown, Cause.Done>>()
  readonly eventListeners = new Set<Queue.Queue<unknown, Cause.Done>>()
  readonly openWaiters = new Set<(exit: Exit.Exit<void, ClientError>) => void>()

  constructor(channel: Channel.Any, options: Options, clock: Clock.Clock) {
    this.channel = channel
    this.options = options
    this.clock = clock
  }

  setStatus(status: Status): void {
    this.status = status
    for (const listener of this.statusListeners) listener(status)
    if (status._tag === "Open") {
      for (const waiter of this.openWaiters) waiter(Exit.void)
      this.openWaiters.clear()
    }
  }

  // Outgoing -----------------------------------------------------------------------------------

  /** Sends now when open, else keeps it for the next connection. */
  push(frame: string): boolean {
    if (this.ended) return false
    if (this.open && this.ws !== undefined) {
      this.ws.send(frame)
      return true
    }
    if (this.offline.length >= (this.options.offlineQueue ?? 100)) return false
    this.offline.push(frame)
    return true
  }

  send(message: unknown): Effect.Effect<void, ClientError> {
    return Effect.suspend(() => {
      if (this.ended)
        return Effect.fail(new ClientError({ reason: "Closed", message: "the client is closed" }))
      const encoded = this.channel.codecs.client.encode(message)
      if (Exit.isFailure(encoded)) {
        return Effect.fail(
          new ClientError({ reason: "Encode", message: String(Cause.squash(encoded.cause)) })
        )
      }
      return this.push(`{"t":"m","d":${JSON.stringify(encoded.value)}}`)
        ? Effect.void
        : Effect.fail(
            new ClientError({
              reason: "OfflineQueueFull",
              message: "too many messages wait for a connection"
            })
          )
    })
  }

  call<A, E>(
    frameOf: (id: number) => string,
    decode: (frame: Protocol.ServerFrame) => Exit.Exit<A, E | RequestError>,
    timeout: Duration.Input
  ): Effect.Effect<A, E | RequestError> {
    const request = Effect.callback<A, E | RequestError>((resume) => {
      if (this.ended)
        return resume(Effect.fail(new RequestError({ reason: "Closed", message: "the client is closed" })))
      const id = ++this.nextId
      const entry: Pending = { resume: resume as any, decode: decode as any, sent: this.open }
      this.pending.set(id, entry)
      if (!this.push(frameOf(id))) {
        this.pending.delete(id)
        return resume(
          Effect.fail(
            new RequestError({ reason: "Disconnected", message: "too many messages wait for a connection" })
          )
        )
      }
      return Effect.sync(() => void this.pending.delete(id))
    })
    return Effect.timeoutOrElse(request, {
      duration: timeout,
      orElse: () => Effect.fail(new RequestError({ reason: "Timeout", message: "no answer in time" }))
    })
  }

  // Incoming -----------------------------------------------------------------------------------

  onFrame(data: unknown): void {
    this.lastReceived = this.clock.currentTimeMillisUnsafe()
    this.received++
    if (typeof data !== "string") return
    const frame = Protocol.parseServerFrame(data)
    if (frame === undefined) return
    switch (frame.t) {
      case "m": {
        const decoded = this.channel.codecs.server.decode(frame.d)
        if (Exit.isSuccess(decoded))
          for (const queue of this.messageListeners) Queue.offerUnsafe(queue, decoded.value)
        return
      }
      case "r":
      case "P": {
        const id = typeof frame.i === "number" ? frame.i : Number.NaN
        const entry = this.pending.get(id)
        if (entry === undefined) return
        this.pending.delete(id)
        entry.resume(entry.decode(frame))
        return
      }
      case "e":
        return this.onEvent(frame)
      case "j":
        return this.onJoined(frame)
      case "l": {
        const sub = this.subscriptions.get(`${frame.n}/${JSON.stringify(frame.k)}`)
        if (sub !== undefined) sub.joined = false
        return
      }
      case "h":
        this.ws?.send('{"t":"H"}')
        return
      default:
        return
    }
  }

  private onEvent(frame: Extract<Protocol.ServerFrame, { readonly t: "e" }>): void {
    const keyJson = JSON.stringify(frame.k)
    const sub = this.subscriptions.get(`${frame.n}/${keyJson}`)
    if (sub !== undefined && frame.o > 0) {
      // A replay and the live stream may overlap by an event or two: each offset counts once.
      if (sub.position !== undefined && sub.position.e === frame.ep && frame.o <= sub.position.o) return
      sub.position = { e: frame.ep, o: frame.o }
    }
    // The name comes from the peer: `constructor` must not find what every object inherits.
    if (!Object.hasOwn(this.channel.codecs.topics, frame.n)) return
    const codecs = this.channel.codecs.topics[frame.n]!
    const payload = codecs.payload.decode(frame.d)
    if (Exit.isFailure(payload)) return
    if (sub !== undefined) {
      const delivery: Delivery<unknown> = {
        _tag: "Message",
        payload: payload.value,
        offset: frame.o,
        epoch: frame.ep
      }
      for (const queue of sub.listeners) Queue.offerUnsafe(queue, delivery)
    }
    if (this.eventListeners.size > 0) {
      const key = codecs.key.decode(frame.k)
      if (Exit.isFailure(key)) return
      const event = { topic: frame.n, key: key.value, payload: payload.value }
      for (const queue of this.eventListeners) Queue.offerUnsafe(queue, event)
    }
  }

  private onJoined(frame: Extract<Protocol.ServerFrame, { readonly t: "j" }>): void {
    const keyJson = JSON.stringify(frame.k)
    const id = `${frame.n}/${keyJson}`
    let sub = this.subscriptions.get(id)
    if ("no" in frame) {
      if (sub === undefined) return
      this.subscriptions.delete(id)
      const error = new JoinError({ reason: frame.no._tag, message: frame.no.message })
      for (const queue of sub.listeners) Queue.failCauseUnsafe(queue, Cause.fail(error))
      return
    }
    if (sub === undefined) {
      // Joined by the server: its events reach `events`.
      sub = { name: frame.n, key: frame.k, keyJson, position: undefined, listeners: new Set(), joined: true }
      this.subscriptions.set(id, sub)
    }
    sub.joined = true
    const ok = frame.ok as typeof frame.ok & { readonly n?: number }
    const delivery: Delivery<unknown> =
      ok.r === "recovered"
        ? { _tag: "Recovered", replayed: ok.n ?? 0 }
        : ok.r === "gap"
          ? { _tag: "Gap", missed: ok.missed }
          : { _tag: "Joined", offset: ok.o, epoch: ok.e }
    // From here on: the position the server reports (a gap moves past what was lost).
    if (ok.r !== "recovered") sub.position = { e: ok.e, o: ok.o }
    for (const queue of sub.listeners) Queue.offerUnsafe(queue, delivery)
  }

  // Connection lifecycle -----------------------------------------------------------------------

  joinFrame(sub: Subscription): string {
    return JSON.stringify(
      sub.position === undefined
        ? { t: "j", n: sub.name, k: sub.key }
        : { t: "j", n: sub.name, k: sub.key, f: sub.position }
    )
  }

  onOpen(ws: Transport.WebSocketLike): void {
    this.ws = ws
    this.open = true
    this.lastReceived = this.clock.currentTimeMillisUnsafe()
    for (const sub of this.subscriptions.values()) {
      if (sub.listeners.size === 0) {
        this.subscriptions.delete(`${sub.name}/${sub.keyJson}`)
        continue
      }
      ws.send(this.joinFrame(sub))
    }
    const offline = this.offline
    this.offline = []
    for (const frame of offline) ws.send(frame)
    for (const entry of this.pending.values()) entry.sent = true
    this.setStatus({ _tag: "Open" })
  }

  onDisconnect(): void {
    this.open = false
    this.ws = undefined
    for (const sub of this.subscriptions.values()) sub.joined = false
    // Requests already on the wire got lost with the connection.
    for (const [id, entry] of this.pending) {
      if (!entry.sent) continue
      this.pending.delete(id)
      entry.resume(
        Exit.fail(
          new RequestError({ reason: "Disconnected", message: "the connection closed before the answer" })
        )
      )
    }
  }

  end(status: Status): void {
    if (this.ended) return
    this.ended = true
    this.setStatus(status)
    this.onDisconnect()
    for (const [, entry] of this.pending) {
      entry.resume(Exit.fail(new RequestError({ reason: "Closed", message: "the client is closed" })))
    }
    this.pending.clear()
    this.offline = []
    for (const sub of this.subscriptions.values()) {
      for (const queue of sub.listeners)
        Queue.failCauseUnsafe(
          queue,
          Cause.fail(new JoinError({ reason: "Closed", message: "the client is closed" }))
        )
    }
    this.subscriptions.clear()
    for (const queue of this.messageListeners) Queue.endUnsafe(queue)
    for (const queue of this.eventListeners) Queue.endUnsafe(queue)
    for (const waiter of this.openWaiters)
      waiter(Exit.fail(new ClientError({ reason: "Closed", message: "the client ended" })))
    this.openWaiters.clear()
  }

  // Subscriptions ------------------------------------------------------------------------------

  subscribe(name: string, key: unknown): Stream.Stream<Delivery<unknown>, JoinError> {
    return Stream.callback<Delivery<unknown>, JoinError>((queue) =>
      Effect.suspend(() => {
        if (this.ended) {
          Queue.failCauseUnsafe(
            queue,
            Cause.fail(new JoinError({ reason: "Closed", message: "the client is closed" }))
          )
          return Effect.void
        }
        const codecs = this.channel.codecs.topics[name]
        if (codecs === undefined) {
          return Effect.fail(
            new JoinError({ reason: "UnknownTopic", message: `the channel has no topic ${name}` })
          )
        }
        const encoded = codecs.key.encode(key)
        if (Exit.isFailure(encoded)) {
          return Effect.fail(
            new JoinError({ reason: "InvalidKey", message: String(Cause.squash(encoded.cause)) })
          )
        }
        const keyJson = JSON.stringify(encoded.value)
        const id = `${name}/${keyJson}`
        let sub = this.subscriptions.get(id)
        if (sub === undefined) {
          sub = {
            name,
            key: encoded.value,
            keyJson,
            position: undefined,
            listeners: new Set(),
            joined: false
          }
          this.subscriptions.set(id, sub)
        }
        const first = sub.listeners.size === 0
        sub.listeners.add(queue)
        if (first && !sub.joined && this.open) {
          sub.joined = true
          this.ws?.send(this.joinFrame(sub))
        }
        const current = sub
        return Effect.addFinalizer(() =>
          Effect.sync(() => {
            current.listeners.delete(queue)
            if (current.listeners.size > 0 || this.subscriptions.get(id) !== current) return
            this.subscriptions.delete(id)
            if (this.open && current.joined)
              this.ws?.send(JSON.stringify({ t: "l", n: name, k: current.key }))
          })
        )
      })
    )
  }

  presence(
    name: string,
    key: unknown,
    timeout: Duration.Input
  ): Effect.Effect<ReadonlyArray<unknown>, RequestError> {
    return Effect.suspend(() => {
      const codecs = this.channel.codecs.topics[name]
      const encoded = codecs?.key.encode(key)
      if (codecs === undefined || encoded === undefined || Exit.isFailure(encoded)) {
        return Effect.fail(
          new RequestError({ reason: "InvalidRequest", message: `not a key of topic ${name}` })
        )
      }
      return this.call(
        (id) => JSON.stringify({ t: "p", i: id, n: name, k: encoded.value }),
        (frame) => {
          if (frame.t === "P") {
            return Exit.succeed(
              frame.m.map((member) => {
                const meta = codecs.presence?.decode(member.meta)
                return {
                  id: member.id,
                  meta: meta !== undefined && Exit.isSuccess(meta) ? meta.value : undefined
                }
              })
            )
          }
          return failureOf(frame)
        },
        timeout
      )
    })
  }
}

const failureOf = (frame: Protocol.ServerFrame): Exit.Exit<never, RequestError> =>
  frame.t === "r" && "fail" in frame
    ? Exit.fail(new RequestError({ reason: frame.fail._tag, message: frame.fail.message }))
    : Exit.fail(new RequestError({ reason: "Internal", message: "an answer the client does not understand" }))

// The HTTP side of a refused upgrade: browsers hide it from WebSocket code.
const probe = (
  channel: Channel.Any,
  url: string,
  fetch: (url: string, init?: RequestInit) => Promise<Response>
): Effect.Effect<Extract<Status, { readonly _tag: "Refused" }> | undefined> =>
  Effect.promise(async () => {
    try {
      const response = await fetch(url.replace(/^ws/, "http"), {
        headers: { accept: "application/json" }
      })
      const text = await response.text()
      let body: { readonly error?: unknown; readonly message?: unknown; readonly protocol?: unknown } = {}
      try {
        body = JSON.parse(text)
      } catch {
        body = {}
      }
      const error = typeof body.error === "string" ? body.error : `HTTP ${response.status}`
      const message = typeof body.message === "string" ? body.message : text.slice(0, 200)
      if (
        response.status === 426 &&
        typeof body.protocol === "string" &&
        body.protocol !== channel.protocol
      ) {
        return {
          _tag: "Refused" as const,
          status: 400,
          error: "ProtocolMismatch",
          message: `The protocol version differs: this client speaks ${channel.protocol}, the server speaks ${body.protocol}. Reload or update the client.`
        }
      }
      if (response.status === 400 || response.status === 401 || response.status === 403) {
        return { _tag: "Refused" as const, status: response.status, error, message }
      }
      return undefined
    } catch {
      return undefined
    }
  })

/**
 * Makes a client and starts connecting; it closes with the scope.
 *
 * @example
 * ```ts
 * const client = yield* Client.make(chat, { url: "wss://example.com/ws/chat" })
 * yield* client.send({ _tag: "Say", room, text: "hello" })
 * const history = yield* client.request("history", { room })
 * yield* client.subscribe("room", room).pipe(Stream.runForEach((d) => Console.log(d)), Effect.forkScoped)
 * ```
 * @category constructors
 */
export const make = <C extends Channel.Any>(
  channel: C,
  options: Options
): Effect.Effect<Client<C>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const clock = yield* Clock.Clock
    const core = new Core(channel, options, clock)
    const WebSocket =
      options.WebSocket ?? (globalThis as { WebSocket?: Transport.WebSocketConstructor }).WebSocket
    if (WebSocket === undefined) return yield* Effect.die(new Error("no WebSocket: pass options.WebSocket"))
    const requestTimeout = options.requestTimeout ?? "10 seconds"
    const reconnect = options.reconnect === false ? undefined : (options.reconnect ?? {})
    const heartbeat =
      options.heartbeat === false
        ? undefined
        : (options.heartbeat ?? { interval: "20 seconds", timeout: "10 seconds" })
    const fetch = options.fetch ?? (typeof globalThis.fetch === "function" ? globalThis.fetch : undefined)
    const shouldProbe = (options.probe ?? true) && fetch !== undefined

    // One connection: resolves when it closes, with whether it ever opened.
    const connectOnce = Effect.callback<{
      readonly opened: boolean
      readonly code: number
      readonly reason: string
    }>((resume) => {
      let opened = false
      let ws: Transport.WebSocketLike
      try {
        ws = new WebSocket(options.url, [channel.protocol])
      } catch (cause) {
        resume(Effect.succeed({ opened, code: 1006, reason: String(cause) }))
        return
      }
      core.ws = ws
      const onOpen = () => {
        opened = true
        core.onOpen(ws)
      }
      const onMessage = (event: { readonly data: unknown }) => core.onFrame(event.data)
      const onError = () => {}
      const onClose = (event: { readonly code: number; readonly reason: string }) => {
        core.onDisconnect()
        resume(Effect.succeed({ opened, code: event.code, reason: event.reason }))
      }
      ws.addEventListener("open", onOpen)
      ws.addEventListener("message", onMessage)
      ws.addEventListener("error", onError)
      ws.addEventListener("close", onClose)
      return Effect.sync(() => {
        ws.removeEventListener("open", onOpen)
        ws.removeEventListener("message", onMessage)
        ws.removeEventListener("close", onClose)
        core.onDisconnect()
        if (ws.readyState <= 1) ws.close(1000, "")
      })
    })

    // Heartbeats of the open connection: a frame after `interval` of silence; when no frame at all
    // arrives within `timeout` after it, the socket is closed and the connection counts as lost at
    // once (a dead server may never finish the close handshake), which reconnects.
    const beat: Effect.Effect<{ readonly opened: boolean; readonly code: number; readonly reason: string }> =
      heartbeat === undefined
        ? Effect.never
        : Effect.gen(function* () {
            const interval = millis(heartbeat.interval)
            const timeout = millis(heartbeat.timeout)
            while (true) {
              yield* Effect.sleep(interval)
              if (!core.open || core.ws === undefined) continue
              if (clock.currentTimeMillisUnsafe() - core.lastReceived < interval) continue
              const ws = core.ws
              const before = core.received
              ws.send('{"t":"h"}')
              yield* Effect.sleep(timeout)
              if (core.ws === ws && core.received === before) {
                ws.close(Protocol.CloseCode.HeartbeatTimeout, "HeartbeatTimeout")
                return { opened: true, code: Protocol.CloseCode.HeartbeatTimeout, reason: "HeartbeatTimeout" }
              }
            }
          })

    const backoff = (attempt: number) =>
      Effect.map(Random.next, (random) => {
        const initial = millis(reconnect?.initialDelay ?? "250 millis")
        const max = millis(reconnect?.maxDelay ?? "30 seconds")
        const base = Math.min(max, initial * Math.pow(reconnect?.factor ?? 2, attempt - 1))
        const jitter = Math.min(1, Math.max(0, reconnect?.jitter ?? 0.5))
        return Math.round(base * (1 - jitter * random))
      })

    const loop = Effect.gen(function* () {
      let attempt = 0
      while (!core.ended) {
        core.setStatus({ _tag: "Connecting", attempt })
        const outcome = yield* Effect.raceFirst(connectOnce, beat)
        if (core.ended) return
        if (outcome.opened) attempt = 0
        const reason = Protocol.closeReason(outcome.code, outcome.reason)
        if (!outcome.opened && shouldProbe) {
          const refused = yield* probe(channel, options.url, fetch!)
          if (refused !== undefined) return core.end(refused)
        }
        if (reconnect === undefined || !reconnectCodes.has(outcome.code))
          return core.end({ _tag: "Closed", reason })
        attempt++
        if (attempt > (reconnect.maxAttempts ?? Infinity)) return core.end({ _tag: "Closed", reason })
        const delay = yield* backoff(attempt)
        core.setStatus({ _tag: "Reconnecting", attempt, delay, reason })
        yield* Effect.sleep(delay)
      }
    })

    const fiber = yield* Effect.forkScoped(loop)
    const close = Effect.suspend(() => {
      core.end({ _tag: "Closed", reason: Protocol.closeReason(1000, "closed by the client") })
      return fiber.interruptUnsafe === undefined ? Effect.void : Effect.sync(() => fiber.interruptUnsafe())
    })
    yield* Effect.addFinalizer(() => close)

    const listen = <A>(set: Set<Queue.Queue<A, Cause.Done>>): Stream.Stream<A> =>
      Stream.callback<A>((queue) =>
        Effect.suspend(() => {
          if (core.ended) {
            Queue.endUnsafe(queue)
            return Effect.void
          }
          set.add(queue)
          return Effect.addFinalizer(() => Effect.sync(() => void set.delete(queue)))
        })
      )

    const client: Client<Channel.Any> = {
      send: (message) => core.send(message),
      request: (name, request, callOptions) =>
        Effect.suspend(() => {
          const codecs = channel.codecs.requests[name]
          if (codecs === undefined) {
            return Effect.fail(
              new RequestError({ reason: "UnknownRequest", message: `the channel has no request ${name}` })
            )
          }
          const encoded = codecs.request.encode(request)
          if (Exit.isFailure(encoded)) {
            return Effect.fail(
              new RequestError({ reason: "InvalidRequest", message: String(Cause.squash(encoded.cause)) })
            )
          }
          const body = JSON.stringify(encoded.value)
          const nameJson = JSON.stringify(name)
          return core.call(
            (id) => `{"t":"q","i":${id},"n":${nameJson},"d":${body}}`,
            (frame): Exit.Exit<unknown, unknown> => {
              if (frame.t !== "r") return failureOf(frame)
              if ("ok" in frame) {
                const decoded = codecs.response.decode(frame.ok)
                return Exit.isSuccess(decoded)
                  ? decoded
                  : Exit.fail(
                      new RequestError({
                        reason: "Internal",
                        message: "the answer does not fit the response schema"
                      })
                    )
              }
              if ("err" in frame && codecs.error !== undefined) {
                const decoded = codecs.error.decode(frame.err)
                return Exit.isSuccess(decoded)
                  ? Exit.fail(decoded.value)
                  : Exit.fail(
                      new RequestError({
                        reason: "Internal",
                        message: "the error does not fit the error schema"
                      })
                    )
              }
              return failureOf(frame)
            },
            callOptions?.timeout ?? requestTimeout
          ) as Effect.Effect<any, any>
        }),
      subscribe: (topic, key) => core.subscribe(topic, key) as Stream.Stream<any, JoinError>,
      presence: (topic, key) => core.presence(topic, key, requestTimeout) as any,
      messages: listen(core.messageListeners) as Stream.Stream<any>,
      events: listen(core.eventListeners) as any,
      status: Stream.callback<Status>((queue) =>
        Effect.suspend(() => {
          Queue.offerUnsafe(queue, core.status)
          const listener = (status: Status) => void Queue.offerUnsafe(queue, status)
          core.statusListeners.add(listener)
          return Effect.addFinalizer(() => Effect.sync(() => void core.statusListeners.delete(listener)))
        })
      ),
      currentStatus: Effect.sync(() => core.status),
      awaitOpen: Effect.callback<void, ClientError>((resume) => {
        if (core.status._tag === "Open") return resume(Effect.void)
        if (core.ended)
          return resume(Effect.fail(new ClientError({ reason: "Closed", message: "the client ended" })))
        const waiter = (exit: Exit.Exit<void, ClientError>) => resume(exit)
        core.openWaiters.add(waiter)
        return Effect.sync(() => void core.openWaiters.delete(waiter))
      }),
      close
    }
    return client as unknown as Client<C>
  })
