/**
 * The per-process side of channels: the open connections with their bounded outbound queues,
 * heartbeats and timeouts, the topics they joined, fan-out through `PubSub`, and graceful shutdown.
 * Every app that serves a channel route provides one: `Hub.layer()` (in memory) or `Hub.layerWith()`
 * with a `PubSub` such as `PubSubRedis.layer`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Protocol from "./Protocol.ts"
import * as PubSub from "./PubSub.ts"
import type * as Transport from "./Transport.ts"

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/**
 * What a connection does when its outbound queue is full:
 *
 * - `suspend`: the sender waits for room (a publisher waits for its slowest local subscriber)
 * - `dropNewest`: the new frame is dropped
 * - `dropOldest`: the oldest queued frame is dropped to make room
 * - `close`: the connection is closed with 4005 `SlowConsumer` (the client reconnects and resumes
 *   its topics from history)
 *
 * @category models
 */
export type OverflowPolicy = "suspend" | "dropNewest" | "dropOldest" | "close"

/**
 * The outbound queue of each connection. Frames are written to the socket while it holds fewer
 * than `highWaterMark` bytes; then they wait in the queue, up to `limit` frames.
 *
 * @category models
 */
export interface OutboundOptions {
  /** Frames the queue holds (1,024). */
  readonly limit?: number | undefined
  /** Bytes the socket may hold before frames queue (64 KiB; keep it at least Node's 16 KiB). */
  readonly highWaterMark?: number | undefined
  /** What a full queue does (`close`). */
  readonly policy?: OverflowPolicy | undefined
}

/**
 * Heartbeats: a ping after `interval` without hearing from the client; no answer within `timeout`
 * closes the connection with 4003 `HeartbeatTimeout`.
 *
 * @category models
 */
export interface HeartbeatOptions {
  readonly interval: Duration.Input
  readonly timeout: Duration.Input
}

/**
 * How a connection behaves; set per route.
 *
 * @category models
 */
export interface ConnectionOptions {
  readonly outbound?: OutboundOptions | undefined
  /** Heartbeats (every 25 s, 20 s to answer), or `false` for none. */
  readonly heartbeat?: HeartbeatOptions | false | undefined
  /** Close with 4004 `IdleTimeout` after this long without a message, request or join (none). */
  readonly idleTimeout?: Duration.Input | undefined
}

/**
 * How a graceful shutdown goes: connections get a 1001 close in batches of `batchSize`, one batch
 * every `batchInterval`; those still open at `deadline` (counted from the start) are cut.
 *
 * @category models
 */
export interface ShutdownOptions {
  readonly batchSize?: number | undefined
  readonly batchInterval?: Duration.Input | undefined
  readonly deadline?: Duration.Input | undefined
}

/**
 * Options of the hub.
 *
 * @category models
 */
export interface Options {
  /** How often heartbeats, timeouts and stalled queues are checked (1 second). */
  readonly tick?: Duration.Input | undefined
  /** The defaults of `shutdown`, which also runs when the layer is released. */
  readonly shutdown?: ShutdownOptions | undefined
  /** The node's id, part of every connection id (random). */
  readonly nodeId?: string | undefined
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/**
 * What one connection did so far.
 *
 * @category models
 */
export interface ConnectionMetrics {
  /** Frames received. */
  readonly received: number
  /** Frames written to the socket. */
  readonly sent: number
  /** Frames dropped by the overflow policy. */
  readonly dropped: number
  /** Frames waiting in the queue now. */
  readonly queued: number
  /** The most frames that ever waited at once. */
  readonly maxQueued: number
}

/**
 * What the hub did so far; also reported as Effect metrics (`strata_ws_*`) once per tick.
 *
 * @category models
 */
export interface HubMetrics {
  readonly connections: number
  readonly opened: number
  readonly received: number
  readonly sent: number
  readonly dropped: number
  readonly slowConsumerCloses: number
  readonly heartbeatTimeouts: number
  readonly idleTimeouts: number
}

const metricConnections = Metric.gauge("strata_ws_connections", { description: "Open WebSocket connections" })
const metricReceived = Metric.counter("strata_ws_frames_received", { description: "Frames received" })
const metricSent = Metric.counter("strata_ws_frames_sent", { description: "Frames written to sockets" })
const metricDropped = Metric.counter("strata_ws_frames_dropped", {
  description: "Frames dropped by an outbound queue's overflow policy"
})
const metricSlow = Metric.counter("strata_ws_slow_consumer_closes", {
  description: "Connections closed because their outbound queue filled up"
})

// ---------------------------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------------------------

/**
 * What a connection tells the channel that runs on it.
 *
 * @category models
 */
export interface ConnectionHandler {
  readonly message: (text: string) => void
  readonly binary: () => void
  readonly closed: (code: number, reason: string) => void
}

const OPEN = 0
const CLOSING = 1
const CLOSED = 2

const millis = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

/**
 * A route's connection options, resolved once and shared by its connections.
 *
 * @category models
 */
export interface Settings {
  readonly limit: number
  readonly highWaterMark: number
  readonly policy: OverflowPolicy
  readonly heartbeatInterval: number
  readonly heartbeatTimeout: number
  readonly idleTimeout: number
}

/**
 * Resolves connection options with their defaults.
 *
 * @category constructors
 */
export const resolveSettings = (options: ConnectionOptions): Settings => {
  const heartbeat =
    options.heartbeat === false
      ? undefined
      : (options.heartbeat ?? { interval: "25 seconds", timeout: "20 seconds" })
  return {
    limit: Math.max(1, options.outbound?.limit ?? 1024),
    highWaterMark: options.outbound?.highWaterMark ?? 64 * 1024,
    policy: options.outbound?.policy ?? "close",
    heartbeatInterval: heartbeat === undefined ? 0 : millis(heartbeat.interval),
    heartbeatTimeout: heartbeat === undefined ? 0 : millis(heartbeat.timeout),
    idleTimeout: options.idleTimeout === undefined ? 0 : millis(options.idleTimeout)
  }
}

const noTopics: ReadonlySet<string> = new Set()

/**
 * One connection, as the hub runs it. Channels wrap it in their typed connection; its methods are
 * synchronous and safe to call at any time (a closed connection ignores them). Idle connections are
 * kept small: queues, waiters and topic sets exist only once used.
 *
 * @category models
 */
export class Connection implements Transport.Listener {
  readonly id: string
  readonly namespace: string
  /** @internal */ readonly hub: HubImpl
  /** @internal */ readonly socket: Transport.Socket
  /** @internal */ readonly settings: Settings
  /** @internal */ state = OPEN
  /** @internal */ handler: ConnectionHandler | undefined = undefined
  /** @internal */ closeCode = 0
  /** @internal */ closeMessage = ""
  private joined: Set<string> | undefined = undefined

  // Outbound
  private queue: Array<string | Uint8Array> | undefined = undefined
  private waiters: Array<() => void> | undefined = undefined
  /** @internal */ tick = -1
  /** @internal */ corked = false

  // Liveness
  /** @internal */ lastReceived: number
  /** @internal */ lastActivity: number
  /** @internal */ pingSentAt = 0
  /** @internal */ closingSince = 0

  // Metrics
  /** @internal */ received = 0
  /** @internal */ sent = 0
  /** @internal */ dropped = 0
  private maxQueued = 0

  /** @internal */
  constructor(hub: HubImpl, id: string, namespace: string, socket: Transport.Socket, settings: Settings) {
    this.hub = hub
    this.id = id
    this.namespace = namespace
    this.socket = socket
    this.settings = settings
    const now = hub.now()
    this.lastReceived = now
    this.lastActivity = now
  }

  /** Is the connection open (not closing or closed)? */
  get isOpen(): boolean {
    return this.state === OPEN
  }

  /** The ids of the topics the connection is in. */
  get topics(): ReadonlySet<string> {
    return this.joined ?? noTopics
  }

  /** @internal */
  addTopic(id: string): void {
    ;(this.joined ??= new Set()).add(id)
  }

  /** @internal */
  removeTopic(id: string): boolean {
    return this.joined?.delete(id) ?? false
  }

  /** What the connection did so far. */
  metrics(): ConnectionMetrics {
    return {
      received: this.received,
      sent: this.sent,
      dropped: this.dropped,
      queued: this.queue?.length ?? 0,
      maxQueued: this.maxQueued
    }
  }

  /** @internal */
  write(frame: string | Uint8Array): void {
    const hub = this.hub
    // The first frame of a tick leaves at once; later ones in the same tick are corked and leave
    // together in one write when the tick ends.
    if (this.tick === hub.tick) {
      if (!this.corked) {
        this.corked = true
        this.socket.cork()
        hub.corked.push(this)
      }
    } else {
      this.tick = hub.tick
      hub.scheduleTick()
    }
    this.socket.send(frame)
    this.sent++
  }

  /**
   * Queues a frame under the overflow policy. False when the queue is full under `suspend`: the
   * frame was queued anyway and the caller should wait for `awaitRoom`.
   *
   * @internal
   */
  offer(frame: string | Uint8Array): boolean {
    if (this.state !== OPEN) return true
    const queue = this.queue
    if (
      (queue === undefined || queue.length === 0) &&
      this.socket.bufferedAmount < this.settings.highWaterMark
    ) {
      this.write(frame)
      return true
    }
    const length = queue?.length ?? 0
    if (length < this.settings.limit) {
      this.enqueue(frame)
      return true
    }
    switch (this.settings.policy) {
      case "dropNewest":
        this.dropped++
        this.hub.dropped++
        return true
      case "dropOldest":
        queue!.shift()
        this.dropped++
        this.hub.dropped++
        this.enqueue(frame)
        return true
      case "close":
        this.dropped += length + 1
        this.hub.dropped += length + 1
        this.queue = undefined
        this.hub.slowConsumerCloses++
        this.close(Protocol.CloseCode.SlowConsumer, "SlowConsumer")
        return true
      case "suspend":
        this.enqueue(frame)
        return false
    }
  }

  private enqueue(frame: string | Uint8Array): void {
    const queue = (this.queue ??= [])
    queue.push(frame)
    if (queue.length > this.maxQueued) this.maxQueued = queue.length
  }

  /** Waits until the queue has room (or the connection closed). @internal */
  awaitRoom(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.state === CLOSED || (this.queue?.length ?? 0) < this.settings.limit) return resume(Effect.void)
      const waiter = () => resume(Effect.void)
      ;(this.waiters ??= []).push(waiter)
      return Effect.sync(() => {
        this.waiters = this.waiters?.filter((w) => w !== waiter)
      })
    })
  }

  /**
   * Sends a frame under the overflow policy; under `suspend`, waits for room.
   *
   * @internal
   */
  send(frame: string | Uint8Array): Effect.Effect<void> {
    return this.offer(frame) ? Effect.void : this.awaitRoom()
  }

  /** Writes queued frames while the socket has room. @internal */
  flush(): void {
    const queue = this.queue
    if (this.state !== OPEN || queue === undefined) return
    while (queue.length > 0 && this.socket.bufferedAmount < this.settings.highWaterMark) {
      this.write(queue.shift()!)
    }
    if (queue.length === 0) this.queue = undefined
    if (queue.length < this.settings.limit && this.waiters !== undefined) this.wake()
  }

  private wake(): void {
    const waiters = this.waiters
    this.waiters = undefined
    if (waiters !== undefined) for (const waiter of waiters) waiter()
  }

  /** Starts the close handshake with a code and reason. */
  close(code: number, reason: string): void {
    if (this.state !== OPEN) return
    this.state = CLOSING
    this.closeCode = code
    this.closeMessage = reason
    this.closingSince = this.hub.now()
    this.queue = undefined
    this.socket.close(code, Protocol.truncateReason(reason))
  }

  /** @internal */
  terminate(): void {
    if (this.state === CLOSED) return
    this.socket.terminate()
  }

  // The socket's events ------------------------------------------------------------------------

  /** @internal */
  onMessage(text: string): void {
    this.lastReceived = this.hub.now()
    this.pingSentAt = 0
    this.received++
    this.handler?.message(text)
  }

  /** @internal */
  onBinary(): void {
    this.received++
    this.handler?.binary()
  }

  /** @internal */
  onPong(): void {
    this.lastReceived = this.hub.now()
    this.pingSentAt = 0
  }

  /** @internal */
  onDrain(): void {
    this.flush()
  }

  /** @internal */
  onClose(code: number, reason: string): void {
    if (this.state === CLOSED) return
    this.state = CLOSED
    if (this.closeCode === 0) {
      this.closeCode = code
      this.closeMessage = reason
    }
    this.queue = undefined
    this.wake()
    this.hub.remove(this)
    this.handler?.closed(this.closeCode, this.closeMessage)
  }

  /** Records application traffic (for the idle timeout). @internal */
  touch(): void {
    this.lastActivity = this.lastReceived
  }

  /** Heartbeats, timeouts and stalled queues, once per tick. @internal */
  sweep(now: number, tick: number): void {
    if (this.state === CLOSED) return
    if (this.state === CLOSING) {
      // A peer that does not finish the close handshake within a tick or two is cut.
      if (now - this.closingSince >= 2 * tick) this.terminate()
      return
    }
    if (this.queue !== undefined) this.flush()
    const settings = this.settings
    if (settings.heartbeatInterval > 0) {
      if (this.pingSentAt > 0) {
        if (now - this.pingSentAt >= settings.heartbeatTimeout) {
          this.hub.heartbeatTimeouts++
          this.close(Protocol.CloseCode.HeartbeatTimeout, "HeartbeatTimeout")
          return
        }
      } else if (now - this.lastReceived >= settings.heartbeatInterval) {
        this.pingSentAt = now
        if (!this.socket.ping()) this.write('{"t":"h"}')
      }
    }
    if (settings.idleTimeout > 0 && now - this.lastActivity >= settings.idleTimeout) {
      this.hub.idleTimeouts++
      this.close(Protocol.CloseCode.IdleTimeout, "IdleTimeout")
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------------------------

interface Subscription {
  /** Events that arrived while the join's replay was being read. */
  buffer: Array<PubSub.Event> | undefined
  /** The offset of the last event sent, to skip what the replay already sent. */
  last: number
}

interface LocalTopic {
  readonly head: string
  readonly subs: Map<Connection, Subscription>
}

/**
 * The id of a topic in the fan-out: channel namespace, topic name and the key's JSON.
 *
 * @category models
 */
export const topicId = (namespace: string, name: string, keyJson: string): string =>
  `${namespace}/${name}/${keyJson}`

/**
 * The id that reaches every connection of a channel.
 *
 * @category models
 */
export const allId = (namespace: string): string => `${namespace}/*`

const encoder = new TextEncoder()

// ---------------------------------------------------------------------------------------------
// Hub
// ---------------------------------------------------------------------------------------------

/** @internal */
export class HubImpl {
  readonly nodeId: string
  readonly pubsub: PubSub.PubSub["Service"]
  readonly clock: Clock.Clock
  accepting = true
  /** @internal */ tick = 0
  /** @internal */ corked: Array<Connection> = []
  private tickScheduled = false
  private counter = 0
  private readonly connections = new Set<Connection>()
  private readonly byNamespace = new Map<string, Set<Connection>>()
  private readonly topics = new Map<string, LocalTopic>()
  private emptied: Deferred.Deferred<void> | undefined
  private shutdownDone: Deferred.Deferred<void> | undefined
  /** Runs background effects (presence clean-up) with the hub's services. */
  readonly runFork: <A, E>(effect: Effect.Effect<A, E>) => unknown

  // Metrics
  opened = 0
  dropped = 0
  slowConsumerCloses = 0
  heartbeatTimeouts = 0
  idleTimeouts = 0
  private closedReceived = 0
  private closedSent = 0
  private reported = { received: 0, sent: 0, dropped: 0, slow: 0 }

  constructor(nodeId: string, pubsub: PubSub.PubSub["Service"], context: Context.Context<never>) {
    this.nodeId = nodeId
    this.pubsub = pubsub
    this.clock = Context.get(context, Clock.Clock)
    this.runFork = Effect.runForkWith(context)
  }

  now(): number {
    return this.clock.currentTimeMillisUnsafe()
  }

  scheduleTick(): void {
    if (this.tickScheduled) return
    this.tickScheduled = true
    queueMicrotask(this.endTick)
  }

  private readonly endTick = () => {
    this.tickScheduled = false
    this.tick++
    const corked = this.corked
    if (corked.length === 0) return
    this.corked = []
    for (const connection of corked) {
      connection.corked = false
      connection.socket.uncork()
    }
  }

  attach(socket: Transport.Socket, namespace: string, settings: Settings): Connection {
    const connection = new Connection(
      this,
      `${this.nodeId}.${(++this.counter).toString(36)}`,
      namespace,
      socket,
      settings
    )
    this.connections.add(connection)
    let peers = this.byNamespace.get(namespace)
    if (peers === undefined) this.byNamespace.set(namespace, (peers = new Set()))
    peers.add(connection)
    this.opened++
    socket.listen(connection)
    return connection
  }

  remove(connection: Connection): void {
    if (!this.connections.delete(connection)) return
    this.closedReceived += connection.received
    this.closedSent += connection.sent
    const peers = this.byNamespace.get(connection.namespace)
    if (peers !== undefined) {
      peers.delete(connection)
      if (peers.size === 0) this.byNamespace.delete(connection.namespace)
    }
    for (const id of connection.topics) this.runFork(this.dropSubscription(connection, id))
    if (this.connections.size === 0 && this.emptied !== undefined)
      Deferred.doneUnsafe(this.emptied, Exit.void)
  }

  // Topics ------------------------------------------------------------------------------------

  /** Joins a connection to a topic and sends the join answer and the replay. @internal */
  subscribe(
    connection: Connection,
    id: string,
    name: string,
    keyJson: string,
    from: Protocol.Position | undefined,
    member: string | undefined
  ): Effect.Effect<PubSub.Replay | undefined, PubSub.PubSubError> {
    return Effect.suspend(() => {
      if (!connection.isOpen) return Effect.succeed(undefined)
      let topic = this.topics.get(id)
      if (topic === undefined) {
        topic = { head: `{"t":"e","n":${JSON.stringify(name)},"k":${keyJson},"o":`, subs: new Map() }
        this.topics.set(id, topic)
      }
      const subscription: Subscription = { buffer: [], last: 0 }
      topic.subs.set(connection, subscription)
      connection.addTopic(id)
      const head = topic.head
      const joined =
        member === undefined
          ? Effect.void
          : this.pubsub.presence.join(id, { id: connection.id, meta: member })
      return Effect.flatMap(joined, () => this.pubsub.replay(id, from)).pipe(
        Effect.map((replay) => {
          if (topic.subs.get(connection) !== subscription || !connection.isOpen) return undefined
          const ok: Record<string, unknown> = { r: replay.result, e: replay.epoch, o: replay.offset }
          if (replay.result === "recovered") ok["n"] = replay.events.length
          if (replay.missed !== undefined) ok["missed"] = replay.missed
          connection.offer(`{"t":"j","n":${JSON.stringify(name)},"k":${keyJson},"ok":${JSON.stringify(ok)}}`)
          let last = from !== undefined && replay.result === "recovered" ? from.o : replay.offset
          for (const event of replay.events) {
            connection.offer(eventFrame(head, event.offset, replay.epoch, event.payload))
            last = event.offset
          }
          const buffered = subscription.buffer ?? []
          subscription.buffer = undefined
          for (const event of buffered) {
            if (event.offset > last || event.offset === 0) {
              if (event.except !== connection.id)
                connection.offer(eventFrame(head, event.offset, event.epoch, event.payload))
              last = event.offset
            }
          }
          subscription.last = last
          return replay
        }),
        Effect.onError(() => Effect.sync(() => this.unsubscribe(connection, id)))
      )
    })
  }

  /** @internal */
  unsubscribe(connection: Connection, id: string): Effect.Effect<void> {
    if (!connection.removeTopic(id)) return Effect.void
    return this.dropSubscription(connection, id)
  }

  private dropSubscription(connection: Connection, id: string): Effect.Effect<void> {
    const topic = this.topics.get(id)
    if (topic !== undefined) {
      topic.subs.delete(connection)
      if (topic.subs.size === 0) this.topics.delete(id)
    }
    // A failure to reach the store only leaves a member that the store's own expiry removes.
    return Effect.ignore(this.pubsub.presence.leave(id, connection.id))
  }

  /** Who is in a topic, on every node. @internal */
  presence(id: string): Effect.Effect<ReadonlyArray<PubSub.Member>, PubSub.PubSubError> {
    return this.pubsub.presence.list(id)
  }

  /** @internal */
  publish(
    id: string,
    payload: string,
    except: string | undefined,
    history: number
  ): Effect.Effect<{ readonly offset: number; readonly epoch: string }, PubSub.PubSubError> {
    return this.pubsub.publish({ topic: id, payload, except, history })
  }

  /** Delivers an event of the fan-out to this node's subscribers. @internal */
  readonly deliver = (event: PubSub.Event): Effect.Effect<void> => {
    if (event.topic.endsWith("/*")) {
      const peers = this.byNamespace.get(event.topic.slice(0, -2))
      if (peers === undefined) return Effect.void
      return this.fanOut(peers, `{"t":"m","d":${event.payload}}`, event.except)
    }
    const topic = this.topics.get(event.topic)
    if (topic === undefined) return Effect.void
    let targets: Array<Connection> | undefined
    for (const [connection, subscription] of topic.subs) {
      if (subscription.buffer !== undefined) {
        subscription.buffer.push(event)
        continue
      }
      if (event.offset !== 0) {
        if (event.offset <= subscription.last) continue
        subscription.last = event.offset
      }
      if (connection.id === event.except) continue
      ;(targets ??= []).push(connection)
    }
    if (targets === undefined) return Effect.void
    return this.fanOut(targets, eventFrame(topic.head, event.offset, event.epoch, event.payload), undefined)
  }

  private fanOut(
    targets: Iterable<Connection>,
    text: string,
    except: string | undefined
  ): Effect.Effect<void> {
    let frame: string | Uint8Array = text
    let count = 0
    let blocked: Array<Connection> | undefined
    for (const connection of targets) {
      if (connection.id === except) continue
      // Encoded once, not once per socket.
      if (++count === 2) frame = encoder.encode(text)
      if (!connection.offer(frame)) (blocked ??= []).push(connection)
    }
    return blocked === undefined
      ? Effect.void
      : Effect.forEach(blocked, (c) => c.awaitRoom(), { discard: true })
  }

  // Sweeping and shutdown ---------------------------------------------------------------------

  sweep(tickMillis: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      const now = this.now()
      for (const connection of this.connections) connection.sweep(now, tickMillis)
      const m = this.metrics()
      const delta = {
        received: m.received - this.reported.received,
        sent: m.sent - this.reported.sent,
        dropped: m.dropped - this.reported.dropped,
        slow: m.slowConsumerCloses - this.reported.slow
      }
      this.reported = { received: m.received, sent: m.sent, dropped: m.dropped, slow: m.slowConsumerCloses }
      return Effect.all(
        [
          Metric.update(metricConnections, m.connections),
          Metric.update(metricReceived, delta.received),
          Metric.update(metricSent, delta.sent),
          Metric.update(metricDropped, delta.dropped),
          Metric.update(metricSlow, delta.slow)
        ],
        { discard: true }
      )
    })
  }

  metrics(): HubMetrics {
    let received = this.closedReceived
    let sent = this.closedSent
    for (const connection of this.connections) {
      received += connection.received
      sent += connection.sent
    }
    return {
      connections: this.connections.size,
      opened: this.opened,
      received,
      sent,
      dropped: this.dropped,
      slowConsumerCloses: this.slowConsumerCloses,
      heartbeatTimeouts: this.heartbeatTimeouts,
      idleTimeouts: this.idleTimeouts
    }
  }

  connectionCount(): number {
    return this.connections.size
  }

  shutdown(defaults: ShutdownOptions, options: ShutdownOptions | undefined): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.shutdownDone !== undefined) return Deferred.await(this.shutdownDone)
      const done = Deferred.makeUnsafe<void>()
      this.shutdownDone = done
      return Effect.ensuring(this.drain(defaults, options), Deferred.done(done, Exit.void))
    })
  }

  private drain(defaults: ShutdownOptions, options: ShutdownOptions | undefined): Effect.Effect<void> {
    const batchSize = Math.max(1, options?.batchSize ?? defaults.batchSize ?? 1000)
    const batchInterval = options?.batchInterval ?? defaults.batchInterval ?? "200 millis"
    const deadline = options?.deadline ?? defaults.deadline ?? "30 seconds"
    return Effect.gen({ self: this }, function* () {
      const connections = this.connections
      this.accepting = false
      const emptied = Deferred.makeUnsafe<void>()
      this.emptied = emptied
      if (connections.size === 0) return
      const all = Array.from(connections)
      const drain = Effect.gen(function* () {
        for (let i = 0; i < all.length; i += batchSize) {
          if (i > 0) yield* Effect.sleep(batchInterval)
          for (const connection of all.slice(i, i + batchSize)) {
            connection.close(Protocol.CloseCode.GoingAway, "GoingAway")
          }
        }
        yield* Deferred.await(emptied)
      })
      yield* Effect.timeoutOrElse(drain, {
        duration: deadline,
        orElse: () =>
          Effect.sync(() => {
            for (const connection of connections) {
              // Not closed yet (a later batch): tell it why before cutting it.
              connection.close(Protocol.CloseCode.GoingAway, "GoingAway")
              connection.terminate()
            }
          })
      })
    })
  }
}

const eventFrame = (head: string, offset: number, epoch: string, payload: string): string =>
  `${head}${offset},"ep":"${epoch}","d":${payload}}`

// ---------------------------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------------------------

/**
 * The hub of this process.
 *
 * @category services
 */
export class Hub extends Context.Service<
  Hub,
  {
    /** @internal */
    readonly impl: HubImpl
    /** This node's id. */
    readonly nodeId: string
    /**
     * Stops accepting upgrades (they get 503), closes every connection with 1001 in batches, and
     * cuts those still open at the deadline. Runs once; later calls wait for the first.
     */
    readonly shutdown: (options?: ShutdownOptions) => Effect.Effect<void>
    /** Counters of the hub so far. */
    readonly metrics: Effect.Effect<HubMetrics>
  }
>()("@strata/ws/Hub") {}

const randomId = (): string => PubSub.makeEpoch().slice(0, 8)

const make = (options: Options): Effect.Effect<Hub["Service"], never, PubSub.PubSub | Scope.Scope> =>
  Effect.gen(function* () {
    const pubsub = yield* PubSub.PubSub
    const impl = new HubImpl(options.nodeId ?? randomId(), pubsub, yield* Effect.context<never>())
    const tick = millis(options.tick ?? "1 second")
    const defaults = options.shutdown ?? {}
    yield* pubsub.listen(impl.deliver)
    // The shutdown runs before the sweeper stops (finalizers run in reverse order).
    yield* Effect.forkScoped(Effect.repeat(impl.sweep(tick), Schedule.spaced(tick)))
    yield* Effect.addFinalizer(() => impl.shutdown(defaults, undefined))
    return Hub.of({
      impl,
      nodeId: impl.nodeId,
      shutdown: (overrides) => impl.shutdown(defaults, overrides),
      metrics: Effect.sync(() => impl.metrics())
    })
  })

/**
 * The hub, with topics fanned out by the `PubSub` service (Redis for several processes).
 *
 * @example
 * ```ts
 * App.serve(app).pipe(Layer.provide(Hub.layerWith()), Layer.provide(PubSubRedis.layer({ url: "redis://127.0.0.1:6379" })))
 * ```
 * @category layers
 */
export const layerWith = (options: Options = {}): Layer.Layer<Hub, never, PubSub.PubSub> =>
  Layer.effect(Hub, make(options))

/**
 * The hub with in-memory fan-out: one process.
 *
 * @example
 * ```ts
 * App.serve(app).pipe(Layer.provide(Hub.layer()), Layer.provide(NodeHttpServer.layer(createServer, { port: 3000 })))
 * ```
 * @category layers
 */
export const layer = (options: Options & PubSub.MemoryOptions = {}): Layer.Layer<Hub> =>
  Layer.provide(layerWith(options), PubSub.layerMemory(options))

/**
 * Starts a graceful shutdown of the hub (see `Hub.shutdown`). The layer's release runs it too;
 * run it first when the HTTP server's own shutdown would otherwise wait for open sockets.
 *
 * @category combinators
 */
export const shutdown = (options?: ShutdownOptions): Effect.Effect<void, never, Hub> =>
  Effect.flatMap(Hub, (hub) => hub.shutdown(options))

/**
 * Wraps the layer that serves HTTP (`App.serve(app)`) so that, when the app stops, the channels
 * drain first — 1001 in batches, then the deadline — and only then does the HTTP server close. Without
 * it, Effect's Node server waits up to its graceful-shutdown timeout (20 s) for the open WebSockets
 * before the hub's own shutdown runs.
 *
 * @example
 * ```ts
 * App.serve(app).pipe(Hub.drainFirst, Layer.provide(Hub.layer()), Layer.provide(NodeHttpServer.layer(createServer, { port })))
 * ```
 * @category layers
 */
export const drainFirst = <A, E, R>(serve: Layer.Layer<A, E, R>): Layer.Layer<A, E, R | Hub> =>
  Layer.effectContext(
    Effect.gen(function* () {
      const hub = yield* Hub
      const context = yield* Layer.build(serve)
      // Added after the serving layer's own finalizers, so it runs before them.
      yield* Effect.addFinalizer(() => hub.shutdown())
      return context
    })
  )
