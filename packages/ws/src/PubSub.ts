/**
 * How topic events travel between the server processes of an app, with each topic's bounded history
 * (for resuming after a reconnect) and presence. `layerMemory` serves one process (or several hubs
 * in one process, in tests); `PubSubRedis.layer` serves several processes.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Protocol from "./Protocol.ts"

/**
 * One event as every node receives it. `payload` is the JSON text of the encoded value, so a node
 * builds the frame once for all its subscribers. Broadcasts to every connection of a channel have
 * no history: offset 0, epoch "".
 *
 * @category models
 */
export interface Event {
  readonly topic: string
  readonly payload: string
  readonly offset: number
  readonly epoch: string
  /** A connection id the event must not reach (its sender). */
  readonly except?: string | undefined
}

/**
 * What to publish.
 *
 * @category models
 */
export interface Publish {
  readonly topic: string
  readonly payload: string
  readonly except?: string | undefined
  /** How many events of this topic to keep for resuming; 0 keeps none. */
  readonly history: number
}

/**
 * A topic's position and, when asked to resume, the events after the client's position.
 *
 * @category models
 */
export interface Replay {
  readonly result: Protocol.JoinResult
  readonly epoch: string
  /** The offset of the topic's last event. */
  readonly offset: number
  /** Events after the client's position, oldest first (empty unless `recovered`). */
  readonly events: ReadonlyArray<{ readonly offset: number; readonly payload: string }>
  /** How many events the client missed and cannot get back (`gap`), when known. */
  readonly missed?: number | undefined
}

/**
 * A member of a topic: a connection id and the JSON text of what its join handler returned.
 *
 * @category models
 */
export interface Member {
  readonly id: string
  readonly meta: string
}

/**
 * The fan-out service failed (Redis unreachable, …).
 *
 * @category errors
 */
export class PubSubError extends Data.TaggedError("PubSubError")<{
  readonly reason: string
  readonly cause?: unknown
}> {}

/**
 * The fan-out service.
 *
 * @category services
 */
export class PubSub extends Context.Service<
  PubSub,
  {
    /** Registers a node's handler of events; every event published anywhere reaches every handler. */
    readonly listen: (
      onEvent: (event: Event) => Effect.Effect<void>
    ) => Effect.Effect<void, never, Scope.Scope>
    /** Publishes an event; it gets the topic's next offset. */
    readonly publish: (
      input: Publish
    ) => Effect.Effect<{ readonly offset: number; readonly epoch: string }, PubSubError>
    /** The topic's position, and the events after `from` when they are all still there. */
    readonly replay: (
      topic: string,
      from: Protocol.Position | undefined
    ) => Effect.Effect<Replay, PubSubError>
    readonly presence: {
      readonly join: (topic: string, member: Member) => Effect.Effect<void, PubSubError>
      readonly leave: (topic: string, id: string) => Effect.Effect<void, PubSubError>
      readonly list: (topic: string) => Effect.Effect<ReadonlyArray<Member>, PubSubError>
    }
  }
>()("@strata/ws/PubSub") {}

/**
 * Options of the in-memory fan-out.
 *
 * @category models
 */
export interface MemoryOptions {
  /** Topics whose history is kept; the least recently published are forgotten first (10,000). */
  readonly maxTopics?: number | undefined
}

/**
 * A random epoch: a new one whenever a topic's history starts over.
 *
 * @category constructors
 */
export const makeEpoch = (): string => {
  const bytes = new Uint8Array(8)
  globalThis.crypto.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
}

interface History {
  readonly epoch: string
  last: number
  events: Array<{ readonly offset: number; readonly payload: string }>
}

/**
 * Computes what a client resuming from `from` gets from a history.
 *
 * @category constructors
 */
export const replayFrom = (
  epoch: string,
  last: number,
  events: ReadonlyArray<{ readonly offset: number; readonly payload: string }>,
  from: Protocol.Position | undefined
): Replay => {
  if (from === undefined) return { result: "fresh", epoch, offset: last, events: [] }
  if (from.e === epoch && from.o <= last) {
    const first = events.length > 0 ? events[0]!.offset : last + 1
    // Every event after the client's position is still kept.
    if (from.o >= first - 1) {
      return { result: "recovered", epoch, offset: last, events: events.filter((e) => e.offset > from.o) }
    }
    return { result: "gap", epoch, offset: last, events: [], missed: first - 1 - from.o }
  }
  return { result: "gap", epoch, offset: last, events: [] }
}

/**
 * The in-memory fan-out as a value (one per app, or one shared by several hubs in a test that
 * plays several nodes).
 *
 * @category constructors
 */
export const makeMemory = (options: MemoryOptions = {}): PubSub["Service"] => {
  const maxTopics = options.maxTopics ?? 10_000
  const handlers = new Set<(event: Event) => Effect.Effect<void>>()
  const histories = new Map<string, History>()
  const members = new Map<string, Map<string, string>>()

  const historyOf = (topic: string): History => {
    let history = histories.get(topic)
    if (history === undefined) {
      history = { epoch: makeEpoch(), last: 0, events: [] }
      histories.set(topic, history)
      if (histories.size > maxTopics) histories.delete(histories.keys().next().value!)
    }
    return history
  }

  return {
    listen: (onEvent) =>
      Effect.acquireRelease(
        Effect.sync(() => void handlers.add(onEvent)),
        () => Effect.sync(() => void handlers.delete(onEvent))
      ),
    publish: (input) =>
      Effect.suspend(() => {
        let offset = 0
        let epoch = ""
        if (input.history > 0) {
          const history = historyOf(input.topic)
          // Recently published topics are the last to be forgotten.
          histories.delete(input.topic)
          histories.set(input.topic, history)
          offset = ++history.last
          epoch = history.epoch
          history.events.push({ offset, payload: input.payload })
          if (history.events.length > input.history)
            history.events.splice(0, history.events.length - input.history)
        }
        const event: Event = {
          topic: input.topic,
          payload: input.payload,
          offset,
          epoch,
          except: input.except
        }
        const position = { offset, epoch }
        if (handlers.size === 1) {
          const [only] = handlers
          return Effect.as(only!(event), position)
        }
        return Effect.as(
          Effect.forEach(handlers, (handler) => handler(event), { discard: true }),
          position
        )
      }),
    replay: (topic, from) =>
      Effect.sync(() => {
        const history = historyOf(topic)
        return replayFrom(history.epoch, history.last, history.events, from)
      }),
    presence: {
      join: (topic, member) =>
        Effect.sync(() => {
          let map = members.get(topic)
          if (map === undefined) members.set(topic, (map = new Map()))
          map.set(member.id, member.meta)
        }),
      leave: (topic, id) =>
        Effect.sync(() => {
          const map = members.get(topic)
          if (map === undefined) return
          map.delete(id)
          if (map.size === 0) members.delete(topic)
        }),
      list: (topic) => Effect.sync(() => Array.from(members.get(topic) ?? [], ([id, meta]) => ({ id, meta })))
    }
  }
}

/**
 * The in-memory fan-out: one process.
 *
 * @category layers
 */
export const layerMemory = (options?: MemoryOptions): Layer.Layer<PubSub> =>
  Layer.sync(PubSub, () => makeMemory(options))
