/**
 * Typed WebSocket channels: one value holds the client→server and server→client Schemas, the
 * topics and the requests; `Channel.route` serves it as a Strata route (behind the route's
 * middleware), and `Client.make` speaks it from Node or a browser.
 *
 * @since 0.1.0
 */
import * as Route from "@strata/core/Route"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Schema from "effect/Schema"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Hub from "./Hub.ts"
import * as Protocol from "./Protocol.ts"
import type * as PubSub from "./PubSub.ts"
import * as Transport from "./Transport.ts"

// ---------------------------------------------------------------------------------------------
// Definition
// ---------------------------------------------------------------------------------------------

/**
 * A schema a channel can carry: no services to decode or encode.
 *
 * @category models
 */
export type AnySchema = Schema.Codec<any, any>

/**
 * A topic: its key (a room id, …; encoded as a string or a number), the payload of its events,
 * and optionally what each member tells the others (`presence`, returned by the join handler).
 *
 * @category models
 */
export interface TopicDefinition {
  readonly key: Schema.Codec<any, string | number>
  readonly payload: AnySchema
  readonly presence?: AnySchema | undefined
  /** Events kept for clients that resume after a reconnect (100; 0 keeps none). */
  readonly history?: number | undefined
}

/**
 * A request: what the client sends, what the server answers, and optionally a typed error.
 *
 * @category models
 */
export interface RequestDefinition {
  readonly request: AnySchema
  readonly response: AnySchema
  readonly error?: AnySchema | undefined
}

/**
 * What a channel is made of.
 *
 * @category models
 */
export interface Definition {
  /** Names the channel's topics across processes (derived from the hash when left out). */
  readonly name?: string | undefined
  /** Messages from client to server (usually a tagged union). */
  readonly client: AnySchema
  /** Messages from server to client. */
  readonly server: AnySchema
  readonly topics?: Record<string, TopicDefinition> | undefined
  readonly requests?: Record<string, RequestDefinition> | undefined
}

/**
 * @category type ids
 */
export const TypeId = "~@strata/ws/Channel" as const

interface Codec {
  readonly decode: (u: unknown) => Exit.Exit<any, Schema.SchemaError>
  readonly encode: (a: unknown) => Exit.Exit<any, Schema.SchemaError>
}

/** @internal */
export interface Codecs {
  readonly client: Codec
  readonly server: Codec
  readonly topics: Record<
    string,
    {
      readonly key: Codec
      readonly payload: Codec
      readonly presence: Codec | undefined
      readonly history: number
    }
  >
  readonly requests: Record<
    string,
    { readonly request: Codec; readonly response: Codec; readonly error: Codec | undefined }
  >
}

/**
 * A channel.
 *
 * @category models
 */
export interface Channel<out D extends Definition> extends Pipeable {
  readonly [TypeId]: typeof TypeId
  readonly definition: D
  /** The namespace of its topics. */
  readonly name: string
  /** The hash of its schemas and of the frame format. */
  readonly hash: string
  /** The WebSocket subprotocol, `strata.<hash>`. */
  readonly protocol: string
  /** @internal */
  readonly codecs: Codecs
}

/**
 * Any channel.
 *
 * @category models
 */
export type Any = Channel<Definition>

type Topics<C extends Any> = C["definition"] extends {
  readonly topics: infer T extends Record<string, TopicDefinition>
}
  ? T
  : {}
type Requests<C extends Any> = C["definition"] extends {
  readonly requests: infer T extends Record<string, RequestDefinition>
}
  ? T
  : {}

/** A message of the client schema. @category models */
export type ClientMessage<C extends Any> = C["definition"]["client"]["Type"]
/** A message of the server schema. @category models */
export type ServerMessage<C extends Any> = C["definition"]["server"]["Type"]
/** The names of a channel's topics. @category models */
export type TopicName<C extends Any> = keyof Topics<C> & string
/** The key of a topic. @category models */
export type TopicKey<C extends Any, T extends TopicName<C>> = Topics<C>[T] extends {
  readonly key: infer S extends AnySchema
}
  ? S["Type"]
  : never
/** The payload of a topic's events. @category models */
export type TopicPayload<C extends Any, T extends TopicName<C>> = Topics<C>[T] extends {
  readonly payload: infer S extends AnySchema
}
  ? S["Type"]
  : never
/** What a member of a topic tells the others (`void` without a presence schema). @category models */
export type TopicPresence<C extends Any, T extends TopicName<C>> = Topics<C>[T] extends {
  readonly presence: infer P extends AnySchema
}
  ? P["Type"]
  : void
/** The names of a channel's requests. @category models */
export type RequestName<C extends Any> = keyof Requests<C> & string
/** A request's input. @category models */
export type RequestOf<C extends Any, K extends RequestName<C>> = Requests<C>[K] extends {
  readonly request: infer S extends AnySchema
}
  ? S["Type"]
  : never
/** A request's answer. @category models */
export type ResponseOf<C extends Any, K extends RequestName<C>> = Requests<C>[K] extends {
  readonly response: infer S extends AnySchema
}
  ? S["Type"]
  : never
/** A request's typed error (`never` without an error schema). @category models */
export type ErrorOf<C extends Any, K extends RequestName<C>> = Requests<C>[K] extends {
  readonly error: infer E extends AnySchema
}
  ? E["Type"]
  : never

const Proto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  }
}

const codecOf = (schema: AnySchema): Codec => {
  const json = Schema.toCodecJson(schema)
  return { decode: Schema.decodeUnknownExit(json), encode: Schema.encodeUnknownExit(json) }
}

const namePattern = /^[A-Za-z0-9_.-]+$/

const checkName = (what: string, name: string): string => {
  if (!namePattern.test(name)) throw new Error(`${what} ${JSON.stringify(name)} must match ${namePattern}`)
  return name
}

const jsonSchema = (schema: AnySchema | undefined): unknown =>
  schema === undefined ? null : Schema.toJsonSchemaDocument(schema)

/**
 * Makes a channel. Its hash (the subprotocol `strata.<hash>`) covers every schema and the frame
 * format, so a client built from another version is refused at the handshake.
 *
 * @example
 * ```ts
 * const RoomId = Schema.String.pipe(Schema.brand("RoomId"))
 * const chat = Channel.make({
 *   client: Schema.Union([Schema.TaggedStruct("Say", { room: RoomId, text: Schema.String })]),
 *   server: Schema.Union([Schema.TaggedStruct("Welcome", { user: Schema.String })]),
 *   topics: { room: { key: RoomId, payload: Schema.Struct({ from: Schema.String, text: Schema.String }) } },
 *   requests: { history: { request: Schema.Struct({ room: RoomId }), response: Schema.Array(Schema.String) } }
 * })
 * ```
 * @category constructors
 */
export const make = <const D extends Definition>(definition: D): Channel<D> => {
  const topics = (definition.topics ?? {}) as Record<string, TopicDefinition>
  const requests = (definition.requests ?? {}) as Record<string, RequestDefinition>
  const shape = {
    v: Protocol.version,
    client: jsonSchema(definition.client),
    server: jsonSchema(definition.server),
    topics: Object.fromEntries(
      Object.entries(topics).map(([name, t]) => [
        checkName("topic name", name),
        { key: jsonSchema(t.key), payload: jsonSchema(t.payload), presence: jsonSchema(t.presence) }
      ])
    ),
    requests: Object.fromEntries(
      Object.entries(requests).map(([name, r]) => [
        name,
        { request: jsonSchema(r.request), response: jsonSchema(r.response), error: jsonSchema(r.error) }
      ])
    )
  }
  const hash = Protocol.hash(shape)
  const self = Object.create(Proto)
  self.definition = definition
  self.hash = hash
  self.name = checkName("channel name", definition.name ?? `ch-${hash.slice(0, 8)}`)
  self.protocol = `${Protocol.subprotocolPrefix}${hash}`
  self.codecs = {
    client: codecOf(definition.client),
    server: codecOf(definition.server),
    topics: Object.fromEntries(
      Object.entries(topics).map(([name, t]) => [
        name,
        {
          key: codecOf(t.key),
          payload: codecOf(t.payload),
          presence: t.presence === undefined ? undefined : codecOf(t.presence),
          history: t.history ?? 100
        }
      ])
    ),
    requests: Object.fromEntries(
      Object.entries(requests).map(([name, r]) => [
        name,
        {
          request: codecOf(r.request),
          response: codecOf(r.response),
          error: r.error === undefined ? undefined : codecOf(r.error)
        }
      ])
    )
  } satisfies Codecs
  return self
}

/**
 * Is this value a channel?
 *
 * @category guards
 */
export const isChannel = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u

/**
 * The JSON text of a value encoded by a codec; a value that its own schema refuses is a defect.
 *
 * @internal
 */
export const encodeJson = (codec: Codec, value: unknown, what: string): string => {
  const exit = codec.encode(value)
  if (Exit.isSuccess(exit)) return JSON.stringify(exit.value)
  throw new EncodeError({ what, cause: Cause.squash(exit.cause) })
}

/**
 * A value could not be encoded by its own schema (a defect: the types said it fits).
 *
 * @category errors
 */
export class EncodeError extends Data.TaggedError("EncodeError")<{
  readonly what: string
  readonly cause: unknown
}> {
  override get message(): string {
    return `cannot encode ${this.what}: ${String(this.cause)}`
  }
}

// ---------------------------------------------------------------------------------------------
// Server: the typed connection
// ---------------------------------------------------------------------------------------------

/**
 * A join handler refused the join; the client gets `Denied` with the reason.
 *
 * @category errors
 */
export class Denied extends Data.TaggedError("Denied")<{ readonly reason: string }> {}

/**
 * A connection, as handlers see it: typed by its channel.
 *
 * @category models
 */
export interface Connection<C extends Any> {
  /** Unique across the nodes of the app. */
  readonly id: string
  /** Sends a server message (under `suspend`, waits for room in the outbound queue). */
  readonly send: (message: ServerMessage<C>) => Effect.Effect<void>
  /** Publishes an event to a topic, on every node; `exceptSelf` skips this connection. */
  readonly publish: <T extends TopicName<C>>(
    topic: T,
    key: TopicKey<C, T>,
    payload: TopicPayload<C, T>,
    options?: { readonly exceptSelf?: boolean | undefined }
  ) => Effect.Effect<void, PubSub.PubSubError>
  /** Sends a server message to every connection of the channel, on every node. */
  readonly broadcast: (
    message: ServerMessage<C>,
    options?: { readonly exceptSelf?: boolean | undefined }
  ) => Effect.Effect<void, PubSub.PubSubError>
  /** Joins the connection to a topic without asking its join handler (the client is told). */
  readonly join: <T extends TopicName<C>>(
    topic: T,
    key: TopicKey<C, T>
  ) => Effect.Effect<void, PubSub.PubSubError>
  /** Takes the connection out of a topic (the client is told). */
  readonly leave: <T extends TopicName<C>>(topic: T, key: TopicKey<C, T>) => Effect.Effect<void>
  /** Closes the connection: 4006 `ServerClosed` by default, or an application code 4100–4999. */
  readonly close: (options?: {
    readonly code?: number | undefined
    readonly reason?: string | undefined
  }) => Effect.Effect<void>
  /** What the connection did so far. */
  readonly metrics: Effect.Effect<Hub.ConnectionMetrics>
}

class TypedConnection implements Connection<Any> {
  readonly channel: Any
  readonly raw: Hub.Connection
  constructor(channel: Any, raw: Hub.Connection) {
    this.channel = channel
    this.raw = raw
  }
  get id(): string {
    return this.raw.id
  }
  send(message: unknown): Effect.Effect<void> {
    return Effect.suspend(() =>
      this.raw.send(`{"t":"m","d":${encodeJson(this.channel.codecs.server, message, "a server message")}}`)
    )
  }
  publish(
    topic: string,
    key: unknown,
    payload: unknown,
    options?: { readonly exceptSelf?: boolean | undefined }
  ): Effect.Effect<void, PubSub.PubSubError> {
    return publishWith(
      this.raw.hub,
      this.channel,
      topic,
      key,
      payload,
      options?.exceptSelf ? this.raw.id : undefined
    )
  }
  broadcast(
    message: unknown,
    options?: { readonly exceptSelf?: boolean | undefined }
  ): Effect.Effect<void, PubSub.PubSubError> {
    return broadcastWith(this.raw.hub, this.channel, message, options?.exceptSelf ? this.raw.id : undefined)
  }
  join(topic: string, key: unknown): Effect.Effect<void, PubSub.PubSubError> {
    return Effect.suspend(() => {
      const codecs = this.channel.codecs.topics[topic]!
      const keyJson = encodeJson(codecs.key, key, `a key of topic ${topic}`)
      const id = Hub.topicId(this.channel.name, topic, keyJson)
      return Effect.asVoid(this.raw.hub.subscribe(this.raw, id, topic, keyJson, undefined, "null"))
    })
  }
  leave(topic: string, key: unknown): Effect.Effect<void> {
    return Effect.suspend(() => {
      const codecs = this.channel.codecs.topics[topic]!
      const keyJson = encodeJson(codecs.key, key, `a key of topic ${topic}`)
      return leaveTopic(this.raw, Hub.topicId(this.channel.name, topic, keyJson), topic, keyJson)
    })
  }
  close(options?: {
    readonly code?: number | undefined
    readonly reason?: string | undefined
  }): Effect.Effect<void> {
    return Effect.sync(() => {
      const code = options?.code ?? Protocol.CloseCode.ServerClosed
      if (code !== Protocol.CloseCode.ServerClosed && (code < 4100 || code > 4999) && code !== 1000) {
        throw new RangeError(`close codes of applications are 1000 or 4100–4999, not ${code}`)
      }
      this.raw.close(
        code,
        options?.reason ?? (code === Protocol.CloseCode.ServerClosed ? "ServerClosed" : "")
      )
    })
  }
  get metrics(): Effect.Effect<Hub.ConnectionMetrics> {
    return Effect.sync(() => this.raw.metrics())
  }
}

const leaveTopic = (raw: Hub.Connection, id: string, name: string, keyJson: string): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (!raw.topics.has(id)) return Effect.void
    raw.offer(`{"t":"l","n":${JSON.stringify(name)},"k":${keyJson}}`)
    return raw.hub.unsubscribe(raw, id)
  })

const publishWith = (
  hub: Hub.HubImpl,
  channel: Any,
  topic: string,
  key: unknown,
  payload: unknown,
  except: string | undefined
): Effect.Effect<void, PubSub.PubSubError> =>
  Effect.suspend(() => {
    const codecs = channel.codecs.topics[topic]
    if (codecs === undefined) return Effect.die(new Error(`channel ${channel.name} has no topic ${topic}`))
    const keyJson = encodeJson(codecs.key, key, `a key of topic ${topic}`)
    const body = encodeJson(codecs.payload, payload, `an event of topic ${topic}`)
    return Effect.asVoid(hub.publish(Hub.topicId(channel.name, topic, keyJson), body, except, codecs.history))
  })

const broadcastWith = (
  hub: Hub.HubImpl,
  channel: Any,
  message: unknown,
  except: string | undefined
): Effect.Effect<void, PubSub.PubSubError> =>
  Effect.suspend(() =>
    Effect.asVoid(
      hub.publish(
        Hub.allId(channel.name),
        encodeJson(channel.codecs.server, message, "a server message"),
        except,
        0
      )
    )
  )

/**
 * Publishes an event to a topic from anywhere in the app (an HTTP route, a background job), on
 * every node.
 *
 * @example
 * ```ts
 * yield* Channel.publish(chat, "room", roomId, { from: "system", text: "maintenance at noon" })
 * ```
 * @category server
 */
export const publish = <C extends Any, T extends TopicName<C>>(
  channel: C,
  topic: T,
  key: TopicKey<C, T>,
  payload: TopicPayload<C, T>
): Effect.Effect<void, PubSub.PubSubError, Hub.Hub> =>
  Effect.flatMap(Hub.Hub, (hub) => publishWith(hub.impl, channel, topic, key, payload, undefined))

/**
 * Sends a server message to every connection of the channel, on every node.
 *
 * @category server
 */
export const broadcast = <C extends Any>(
  channel: C,
  message: ServerMessage<C>
): Effect.Effect<void, PubSub.PubSubError, Hub.Hub> =>
  Effect.flatMap(Hub.Hub, (hub) => broadcastWith(hub.impl, channel, message, undefined))

/**
 * A member of a topic: its connection id and what its join handler returned.
 *
 * @category models
 */
export interface Member<P> {
  readonly id: string
  readonly meta: P
}

/**
 * Who is in a topic, on every node.
 *
 * @category server
 */
export const presence = <C extends Any, T extends TopicName<C>>(
  channel: C,
  topic: T,
  key: TopicKey<C, T>
): Effect.Effect<ReadonlyArray<Member<TopicPresence<C, T>>>, PubSub.PubSubError, Hub.Hub> =>
  Effect.flatMap(Hub.Hub, (hub) =>
    Effect.suspend(() => {
      const codecs = channel.codecs.topics[topic]!
      const keyJson = encodeJson(codecs.key, key, `a key of topic ${topic}`)
      return Effect.map(hub.impl.presence(Hub.topicId(channel.name, topic, keyJson)), (members) =>
        members.map((m) => ({ id: m.id, meta: decodeMeta(codecs.presence, m.meta) }))
      )
    })
  )

const decodeMeta = (codec: Codec | undefined, text: string): any => {
  const value = JSON.parse(text)
  if (codec === undefined) return undefined
  const exit = codec.decode(value)
  return Exit.isSuccess(exit) ? exit.value : undefined
}

// ---------------------------------------------------------------------------------------------
// Server: handlers and the route
// ---------------------------------------------------------------------------------------------

/**
 * The handlers of a channel route. Each may read services — request-scoped ones that the route's
 * middleware provide (`CurrentUser`, …) and app services — and the route requires them all.
 *
 * - `onOpen`: after the upgrade, before any frame of the client is handled
 * - `onMessage`: each client message, one at a time, in order
 * - `join`: per topic, whether the connection may join (fail with `Denied`) and what it tells the
 *   other members (`presence`); a topic without a join handler cannot be joined by clients
 * - `requests`: the answer to each request (run concurrently, with a timeout)
 * - `onClose`: after the connection closed, with the reason
 *
 * @category models
 */
export type Handlers<C extends Any> = {
  readonly onOpen?: (connection: Connection<C>) => Effect.Effect<void, PubSub.PubSubError, any>
  readonly onMessage?: (
    message: ClientMessage<C>,
    connection: Connection<C>
  ) => Effect.Effect<void, PubSub.PubSubError, any>
  readonly join?: {
    readonly [T in TopicName<C>]?: (
      key: TopicKey<C, T>,
      connection: Connection<C>
    ) => Effect.Effect<TopicPresence<C, T>, Denied | PubSub.PubSubError, any>
  }
  readonly onClose?: (
    connection: Connection<C>,
    reason: Protocol.CloseReason
  ) => Effect.Effect<void, never, any>
} & ([RequestName<C>] extends [never]
  ? { readonly requests?: {} }
  : {
      readonly requests: {
        readonly [K in RequestName<C>]: (
          request: RequestOf<C, K>,
          connection: Connection<C>
        ) => Effect.Effect<ResponseOf<C, K>, ErrorOf<C, K> | PubSub.PubSubError, any>
      }
    })

type ServicesOfFn<F> = F extends (...args: any) => Effect.Effect<any, any, infer R> ? R : never
type ServicesOfGroup<G> =
  G extends Record<string, any> ? { [K in keyof G]-?: ServicesOfFn<G[K]> }[keyof G] : never

/**
 * The services the handlers read.
 *
 * @category models
 */
export type HandlerServices<H> =
  | ServicesOfFn<H extends { readonly onOpen?: infer F } ? F : never>
  | ServicesOfFn<H extends { readonly onMessage?: infer F } ? F : never>
  | ServicesOfFn<H extends { readonly onClose?: infer F } ? F : never>
  | ServicesOfGroup<H extends { readonly join?: infer G } ? G : never>
  | ServicesOfGroup<H extends { readonly requests?: infer G } ? G : never>

/**
 * Options of a channel route (with the connection options of `Hub`).
 *
 * @category models
 */
export interface RouteOptions extends Hub.ConnectionOptions {
  /** Larger messages close the connection with 1009 (64 KiB). */
  readonly maxMessageSize?: number | undefined
  /** A request handler running longer is interrupted and the client told `Timeout` (30 s). */
  readonly requestTimeout?: Duration.Input | undefined
  /** Requests of one connection running at once; more are answered `Busy` (64). */
  readonly maxConcurrentRequests?: number | undefined
  /** Invalid frames get a typed `x` reply (`reply`, the default) or close the connection (4000/4001). */
  readonly invalidFrames?: "reply" | "close" | undefined
  /** Invalid frames tolerated per connection before it is closed with 4002 (10). */
  readonly maxInvalidFrames?: number | undefined
  /** Client messages waiting for their handler before the socket stops being read (256). */
  readonly maxPendingMessages?: number | undefined
}

/**
 * Serves a channel as a `GET` route: the route's middleware run on the upgrade request first (so an
 * auth failure answers 401/403 before any socket opens, and handlers can `yield* CurrentUser`),
 * then the subprotocol is checked (400 when the client was built from another version of the
 * channel; 426 for a request that is no upgrade; 503 while the hub shuts down). The route requires
 * every service the handlers read, so the app's compile-time checks cover them.
 *
 * @example
 * ```ts
 * const chatRoute = Channel.route(chat, "/chat", {
 *   onMessage: (message, connection) =>
 *     Effect.gen(function* () {
 *       const user = yield* CurrentUser
 *       yield* connection.publish("room", message.room, { from: user.name, text: message.text })
 *     }),
 *   join: { room: (roomId) => Effect.map(CurrentUser, (user) => ({ name: user.name })) },
 *   requests: { history: ({ room }) => Messages.recent(room) }
 * })
 * const app = Router.make([Router.group("/ws", [chatRoute]).pipe(Router.use(Auth.bearer(…)))])
 * ```
 * @category server
 */
export const route = <C extends Any, const P extends Route.Path, const H extends Handlers<C>>(
  channel: C,
  path: P,
  handlers: H,
  options: RouteOptions = {}
): Route.Route<"GET", P, never, HandlerServices<H> | Hub.Hub> =>
  // The upgrade reads the hub and the handlers' services from the fiber (no generator per
  // upgrade), so its own type requires nothing; the route declares them here for the App check.
  Route.make<"GET", P, never, HandlerServices<H> | Hub.Hub>(
    "GET",
    path,
    serveUpgrade(runtimeOf(channel, handlers as Handlers<Any>, options))
  )

// The socket of an upgrade request is not reused for another request: say so, or a pooling client
// (Node's agent) would send its next request down a socket the server ends.
const refusal = (
  status: number,
  error: string,
  message: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {}
) =>
  HttpServerResponse.jsonUnsafe(
    { error, message, ...extra },
    { status, headers: { ...headers, connection: "close" } }
  )

// The request lasts as long as the connection: the middleware's services stay valid for the
// handlers, and the request log line is written when the connection ends. The handshake reads its
// services from the fiber directly (no generator: fewer allocations per upgrade), and once the
// socket is open the fiber waits on the session alone.
const serveUpgrade = (runtime: RouteRuntime) =>
  Effect.withFiber((fiber) => {
    const context = fiber.context
    const request = Context.getUnsafe(context, HttpServerRequest.HttpServerRequest)
    const hub = Context.getUnsafe(context, Hub.Hub).impl
    const refused = refuseUpgrade(runtime.channel, request, hub)
    if (refused !== undefined) return Effect.succeed(refused)
    const upgrade = fiber.getRef(Transport.Upgrader).upgrade(request, {
      protocol: runtime.channel.protocol,
      maxMessageSize: runtime.maxMessageSize
    })
    return Effect.flatMap(Effect.exit(upgrade), (upgraded) => {
      if (Exit.isFailure(upgraded)) {
        return Effect.as(
          Effect.logWarning("WebSocket upgrade failed", upgraded.cause),
          refusal(500, "UpgradeFailed", "The server could not complete the WebSocket handshake")
        )
      }
      const raw = hub.attach(upgraded.value, runtime.channel.name, runtime.settings)
      return new Session(runtime, raw, context).untilEnd
    })
  })

const switched = Effect.sync(() => HttpServerResponse.empty({ status: 101 }))

/** The answer to an upgrade the route will not make, if it will not. */
const refuseUpgrade = (
  channel: Any,
  request: HttpServerRequest.HttpServerRequest,
  hub: Hub.HubImpl
): HttpServerResponse.HttpServerResponse | undefined => {
  if (!hub.accepting) {
    return refusal(
      503,
      "ServiceUnavailable",
      "The server is shutting down; reconnect shortly",
      {},
      { "retry-after": "5" }
    )
  }
  if ((Transport.upgradeHeader(request, "upgrade") ?? "").toLowerCase() !== "websocket") {
    return refusal(
      426,
      "UpgradeRequired",
      `This is a WebSocket endpoint; connect with the subprotocol ${channel.protocol}`,
      { protocol: channel.protocol },
      { upgrade: "websocket" }
    )
  }
  const offer = Transport.upgradeHeader(request, "sec-websocket-protocol")
  if (!Protocol.offersSubprotocol(offer, channel.protocol)) {
    const offered = Protocol.parseSubprotocols(offer)
    const theirs = offered.filter((p) => p.startsWith(Protocol.subprotocolPrefix))
    return refusal(
      400,
      "ProtocolMismatch",
      theirs.length > 0
        ? `The protocol version differs: the client speaks ${theirs.join(", ")}, this server speaks ${channel.protocol}. The client was built from another version of the channel; reload or update it.`
        : `The protocol version differs: the client offered no Strata protocol, this server speaks ${channel.protocol}.`,
      { expected: channel.protocol, received: offered }
    )
  }
  return undefined
}

const TimedOut = Symbol.for("@strata/ws/Channel/TimedOut")

/** What every connection of one route shares: its channel, handlers and resolved options. */
interface RouteRuntime {
  readonly channel: Any
  readonly handlers: Handlers<Any>
  readonly settings: Hub.Settings
  readonly maxMessageSize: number
  readonly requestTimeout: Duration.Input
  readonly maxConcurrent: number
  readonly invalidPolicy: "reply" | "close"
  readonly maxInvalid: number
  readonly maxPending: number
}

const runtimeOf = (channel: Any, handlers: Handlers<Any>, options: RouteOptions): RouteRuntime => ({
  channel,
  handlers,
  settings: Hub.resolveSettings(options),
  maxMessageSize: options.maxMessageSize ?? 64 * 1024,
  requestTimeout: options.requestTimeout ?? "30 seconds",
  maxConcurrent: options.maxConcurrentRequests ?? 64,
  invalidPolicy: options.invalidFrames ?? "reply",
  maxInvalid: options.maxInvalidFrames ?? 10,
  maxPending: options.maxPendingMessages ?? 256
})

/**
 * One connection's dispatcher: frames in, handlers run, answers out. What it needs only once used
 * (queues of work, request bookkeeping) is made on first use, so an idle connection stays small.
 */
class Session implements Hub.ConnectionHandler {
  readonly runtime: RouteRuntime
  readonly channel: Any
  readonly handlers: Handlers<Any>
  readonly raw: Hub.Connection
  readonly connection: TypedConnection
  readonly context: Context.Context<never>
  private resumeRequest:
    ((effect: Effect.Effect<HttpServerResponse.HttpServerResponse>) => void) | undefined = undefined
  private ended = false
  private invalid = 0
  private inbox: Array<Effect.Effect<unknown, unknown, any>> | undefined = undefined
  private current: Fiber.Fiber<unknown, unknown> | undefined = undefined
  private pumping = false
  private paused = false
  private inflight: Map<Protocol.RequestId, Fiber.Fiber<unknown, unknown>> | undefined = undefined
  private seen: Set<Protocol.RequestId> | undefined = undefined
  private seenOrder: Array<Protocol.RequestId> | undefined = undefined

  constructor(runtime: RouteRuntime, raw: Hub.Connection, context: Context.Context<never>) {
    this.runtime = runtime
    this.channel = runtime.channel
    this.handlers = runtime.handlers
    this.raw = raw
    this.connection = new TypedConnection(runtime.channel, raw)
    this.context = context
    raw.handler = this
    const onOpen = runtime.handlers.onOpen
    if (onOpen !== undefined) this.enqueue(Effect.suspend(() => onOpen(this.connection)))
  }

  /**
   * Waits for the connection to end, then answers the request with its 101. Interrupted (the server
   * stops), it cuts the socket.
   */
  get untilEnd(): Effect.Effect<HttpServerResponse.HttpServerResponse> {
    return Effect.callback((resume) => {
      if (this.ended) return resume(switched)
      this.resumeRequest = resume
      return Effect.sync(() => this.raw.terminate())
    })
  }

  private runner: (<A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>) | undefined = undefined

  run<A, E>(effect: Effect.Effect<A, E, any>): Fiber.Fiber<A, E> {
    // Made on first use: an idle connection keeps only its context.
    return (this.runner ??= Effect.runForkWith(this.context))(effect as Effect.Effect<A, E>)
  }

  // What the connection tells it ----------------------------------------------------------------

  message(text: string): void {
    this.onText(text)
  }

  binary(): void {
    this.raw.close(Protocol.CloseCode.UnsupportedData, "channels carry text frames")
  }

  closed(code: number, reason: string): void {
    this.onClosed(code, reason)
  }

  // Sequential work: client messages, joins and leaves run one at a time, in order. --------------

  private enqueue(effect: Effect.Effect<unknown, unknown, any>): void {
    // Nothing running and nothing waiting: run it now, without queueing it.
    if (
      this.current === undefined &&
      !this.pumping &&
      (this.inbox === undefined || this.inbox.length === 0)
    ) {
      const fiber = this.run(effect)
      const exit = fiber.pollUnsafe()
      if (exit !== undefined) return this.report(exit)
      this.current = fiber
      fiber.addObserver((done) => this.resumePump(done))
      return
    }
    const inbox = (this.inbox ??= [])
    inbox.push(effect)
    if (inbox.length >= this.runtime.maxPending && !this.paused) {
      this.paused = true
      this.raw.socket.pause()
    }
    if (this.current === undefined && !this.pumping) this.pump()
  }

  private resumePump(exit: Exit.Exit<unknown, unknown>): void {
    this.current = undefined
    this.report(exit)
    this.pump()
  }

  private pump(): void {
    const inbox = this.inbox
    if (inbox === undefined) return
    this.pumping = true
    while (inbox.length > 0 && this.raw.state !== 2) {
      const fiber = this.run(inbox.shift()!)
      const exit = fiber.pollUnsafe()
      if (exit === undefined) {
        this.current = fiber
        fiber.addObserver((done) => this.resumePump(done))
        break
      }
      this.report(exit)
    }
    this.pumping = false
    if (inbox.length === 0 && this.current === undefined) this.inbox = undefined
    if (this.paused && inbox.length < this.runtime.maxPending / 2) {
      this.paused = false
      this.raw.socket.resume()
    }
  }

  private report(exit: Exit.Exit<unknown, unknown>): void {
    if (Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause)) return
    this.run(
      Effect.logError("channel handler failed", exit.cause).pipe(
        Effect.annotateLogs({ connection: this.raw.id })
      )
    )
  }

  // Frames -------------------------------------------------------------------------------------

  private onText(text: string): void {
    const frame = Protocol.parseClientFrame(text)
    if (typeof frame === "string") return this.refuse("InvalidFrame", frame)
    switch (frame.t) {
      case "h":
        this.raw.offer('{"t":"H"}')
        return
      case "H":
        return
      case "m": {
        this.raw.touch()
        const onMessage = this.handlers.onMessage
        const decoded = this.channel.codecs.client.decode(frame.d)
        if (Exit.isFailure(decoded)) return this.refuse("InvalidMessage", issueText(decoded.cause))
        if (onMessage !== undefined) this.enqueue(onMessage(decoded.value, this.connection))
        return
      }
      case "q":
        this.raw.touch()
        return this.onRequest(frame.i, frame.n, frame.d)
      case "j":
        this.raw.touch()
        return this.enqueue(this.join(frame.n, frame.k, frame.f))
      case "l":
        this.raw.touch()
        return this.enqueue(this.leave(frame.n, frame.k))
      case "p":
        this.raw.touch()
        return this.enqueue(this.members(frame.i, frame.n, frame.k))
    }
  }

  private refuse(tag: "InvalidFrame" | "InvalidMessage", message: string): void {
    this.invalid++
    if (this.runtime.invalidPolicy === "close") {
      this.raw.close(
        tag === "InvalidFrame" ? Protocol.CloseCode.InvalidFrame : Protocol.CloseCode.InvalidMessage,
        Protocol.truncateReason(`${tag}: ${message}`)
      )
      return
    }
    if (this.invalid > this.runtime.maxInvalid) {
      this.raw.close(Protocol.CloseCode.TooManyInvalidFrames, "TooManyInvalidFrames")
      return
    }
    this.raw.offer(JSON.stringify({ t: "x", reason: { _tag: tag, message } }))
  }

  // Requests -----------------------------------------------------------------------------------

  private onRequest(id: Protocol.RequestId, name: string, data: unknown): void {
    // A request id seen before is answered once: the first answer stands.
    const seen = (this.seen ??= new Set())
    if (seen.has(id)) return
    seen.add(id)
    const order = (this.seenOrder ??= [])
    order.push(id)
    if (order.length > 1024) seen.delete(order.shift()!)
    const codecs = own(this.channel.codecs.requests, name)
    const handler = own(
      this.handlers.requests as
        Record<string, (r: unknown, c: unknown) => Effect.Effect<unknown, unknown, any>> | undefined,
      name
    )
    if (codecs === undefined || handler === undefined) {
      return this.fail(id, "UnknownRequest", `the channel has no request ${JSON.stringify(name)}`)
    }
    const inflight = (this.inflight ??= new Map())
    if (inflight.size >= this.runtime.maxConcurrent) {
      return this.fail(
        id,
        "Busy",
        `more than ${this.runtime.maxConcurrent} requests are running on this connection`
      )
    }
    const decoded = codecs.request.decode(data)
    if (Exit.isFailure(decoded)) return this.fail(id, "InvalidRequest", issueText(decoded.cause))
    const effect = Effect.timeoutOrElse(
      Effect.suspend(() => handler(decoded.value, this.connection)),
      { duration: this.runtime.requestTimeout, orElse: () => Effect.fail(TimedOut) }
    )
    const fiber = this.run(effect)
    const exit = fiber.pollUnsafe()
    if (exit !== undefined) return this.answer(id, codecs, exit)
    inflight.set(id, fiber)
    fiber.addObserver((done) => {
      inflight.delete(id)
      this.answer(id, codecs, done)
    })
  }

  private answer(
    id: Protocol.RequestId,
    codecs: Codecs["requests"][string],
    exit: Exit.Exit<unknown, unknown>
  ): void {
    if (!this.raw.isOpen) return
    const idJson = JSON.stringify(id)
    if (Exit.isSuccess(exit)) {
      const encoded = codecs.response.encode(exit.value)
      if (Exit.isSuccess(encoded)) {
        this.raw.offer(`{"t":"r","i":${idJson},"ok":${JSON.stringify(encoded.value)}}`)
      } else {
        this.report(Exit.die(new EncodeError({ what: "a response", cause: Cause.squash(encoded.cause) })))
        this.fail(id, "Internal", "the server could not encode its answer")
      }
      return
    }
    if (Cause.hasInterruptsOnly(exit.cause)) return
    const error = Cause.findErrorOption(exit.cause)
    if (Option.isSome(error)) {
      if (error.value === TimedOut) return this.fail(id, "Timeout", "the request took too long")
      if (isPubSubError(error.value)) {
        this.report(exit)
        return this.fail(id, "Internal", "the server could not reach its fan-out service")
      }
      if (codecs.error !== undefined) {
        const encoded = codecs.error.encode(error.value)
        if (Exit.isSuccess(encoded)) {
          this.raw.offer(`{"t":"r","i":${idJson},"err":${JSON.stringify(encoded.value)}}`)
          return
        }
      }
    }
    this.report(exit)
    this.fail(id, "Internal", "the request failed")
  }

  private fail(id: Protocol.RequestId, tag: Protocol.RequestFailureTag, message: string): void {
    this.raw.offer(JSON.stringify({ t: "r", i: id, fail: { _tag: tag, message } }))
  }

  // Topics -------------------------------------------------------------------------------------

  private topicOf(name: string, key: unknown) {
    const codecs = own(this.channel.codecs.topics, name)
    if (codecs === undefined) return undefined
    const decoded = codecs.key.decode(key)
    if (Exit.isFailure(decoded)) return { codecs, error: issueText(decoded.cause) } as const
    // The key's canonical form: what its schema encodes the decoded value to.
    const keyJson = encodeJson(codecs.key, decoded.value, `a key of topic ${name}`)
    return { codecs, key: decoded.value, keyJson, id: Hub.topicId(this.channel.name, name, keyJson) } as const
  }

  private joinRefused(name: string, key: unknown, tag: Protocol.JoinRefusalTag, message: string): void {
    this.raw.offer(JSON.stringify({ t: "j", n: name, k: key, no: { _tag: tag, message } }))
  }

  private join(
    name: string,
    key: unknown,
    from: Protocol.Position | undefined
  ): Effect.Effect<void, unknown, any> {
    return Effect.suspend(() => {
      const topic = this.topicOf(name, key)
      if (topic === undefined) {
        this.joinRefused(name, key, "UnknownTopic", `the channel has no topic ${JSON.stringify(name)}`)
        return Effect.void
      }
      if ("error" in topic) {
        this.joinRefused(name, key, "InvalidKey", topic.error!)
        return Effect.void
      }
      const authorize = own(
        this.handlers.join as
          Record<string, (k: unknown, c: unknown) => Effect.Effect<unknown, unknown, any>> | undefined,
        name
      )
      if (authorize === undefined) {
        this.joinRefused(name, key, "Denied", `topic ${name} has no join handler`)
        return Effect.void
      }
      const hub = this.raw.hub
      return authorize(topic.key, this.connection).pipe(
        Effect.flatMap((meta) => {
          const member =
            topic.codecs.presence === undefined
              ? "null"
              : encodeJson(topic.codecs.presence, meta, `the presence of topic ${name}`)
          // Joining again (after a reconnect raced with the old socket, or to resume) starts over.
          const again = this.raw.topics.has(topic.id) ? hub.unsubscribe(this.raw, topic.id) : Effect.void
          return Effect.andThen(again, hub.subscribe(this.raw, topic.id, name, topic.keyJson, from, member))
        }),
        Effect.catchCause((cause) => {
          const error = Cause.findErrorOption(cause)
          if (Option.isSome(error) && error.value instanceof Denied) {
            this.joinRefused(name, JSON.parse(topic.keyJson), "Denied", error.value.reason)
            return Effect.void
          }
          if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
          this.joinRefused(name, JSON.parse(topic.keyJson), "Unavailable", "the join could not be completed")
          return Effect.failCause(cause)
        }),
        Effect.asVoid
      )
    })
  }

  private leave(name: string, key: unknown): Effect.Effect<void> {
    return Effect.suspend(() => {
      const topic = this.topicOf(name, key)
      if (topic === undefined || "error" in topic) return Effect.void
      return leaveTopic(this.raw, topic.id!, name, topic.keyJson!)
    })
  }

  private members(
    id: Protocol.RequestId,
    name: string,
    key: unknown
  ): Effect.Effect<void, PubSub.PubSubError> {
    return Effect.suspend(() => {
      const topic = this.topicOf(name, key)
      if (topic === undefined || "error" in topic || !this.raw.topics.has(topic.id!)) {
        this.fail(id, "InvalidRequest", "join the topic before asking who is in it")
        return Effect.void
      }
      return Effect.map(this.raw.hub.presence(topic.id!), (members) => {
        const m = members
          .map((member) => `{"id":${JSON.stringify(member.id)},"meta":${member.meta}}`)
          .join(",")
        this.raw.offer(`{"t":"P","i":${JSON.stringify(id)},"m":[${m}]}`)
      })
    })
  }

  // Lifecycle ----------------------------------------------------------------------------------

  private onClosed(code: number, reason: string): void {
    this.inbox = undefined
    this.current?.interruptUnsafe()
    if (this.inflight !== undefined) for (const fiber of this.inflight.values()) fiber.interruptUnsafe()
    this.inflight = undefined
    const onClose = this.handlers.onClose
    const end = () => {
      this.ended = true
      this.resumeRequest?.(switched)
    }
    if (onClose === undefined) return end()
    const fiber = this.run(Effect.suspend(() => onClose(this.connection, Protocol.closeReason(code, reason))))
    const exit = fiber.pollUnsafe()
    if (exit !== undefined) {
      this.report(exit)
      return end()
    }
    fiber.addObserver((done) => {
      this.report(done)
      end()
    })
  }
}

// A record's own entry: names in frames come from the peer, and `constructor` or `__proto__` must
// not find what every object inherits.
const own = <V>(record: Readonly<Record<string, V>> | undefined, name: string): V | undefined =>
  record !== undefined && Object.hasOwn(record, name) ? record[name] : undefined

const isPubSubError = (u: unknown): boolean =>
  typeof u === "object" && u !== null && (u as { readonly _tag?: unknown })._tag === "PubSubError"

const issueText = (cause: Cause.Cause<Schema.SchemaError>): string => {
  const error = Cause.findErrorOption(cause)
  return Option.isSome(error) ? error.value.message : "invalid"
}
