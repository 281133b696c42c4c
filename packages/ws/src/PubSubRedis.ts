/**
 * Topic fan-out through Redis, for an app that runs on several processes: every event goes to one
 * Redis pub/sub channel that each node listens to, a Lua script gives it the topic's next offset and
 * keeps the topic's bounded history (so a client resumes on any node), and presence lives in a hash
 * per topic, pruned of members whose node stopped refreshing its liveness key.
 *
 * @since 0.1.0
 */
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Redis from "effect/persistence/Redis"
import * as PubSub from "./PubSub.ts"

/**
 * Options of the Redis fan-out.
 *
 * @category models
 */
export interface Options {
  /** Prepended to every key and to the pub/sub channel (`strata:ws:`). */
  readonly prefix?: string | undefined
  /** How long a topic's history and presence outlive its last use (24 hours). */
  readonly ttl?: Duration.Input | undefined
  /** How long a node's members count as present after it stopped refreshing (15 seconds). */
  readonly nodeTtl?: Duration.Input | undefined
}

const publishScript = Redis.script(
  (
    meta: string,
    history: string,
    payload: string,
    size: number,
    channel: string,
    except: string,
    topic: string,
    epoch: string,
    ttl: number
  ) => [meta, history, payload, size, channel, except, topic, epoch, ttl],
  {
    numberOfKeys: 2,
    lua: `
local size = tonumber(ARGV[2])
local offset = 0
local epoch = ""
if size > 0 then
  epoch = redis.call("HGET", KEYS[1], "e")
  if not epoch then
    epoch = ARGV[6]
    redis.call("HSET", KEYS[1], "e", epoch)
  end
  offset = redis.call("HINCRBY", KEYS[1], "o", 1)
  redis.call("RPUSH", KEYS[2], offset .. ":" .. ARGV[1])
  redis.call("LTRIM", KEYS[2], -size, -1)
  redis.call("PEXPIRE", KEYS[1], ARGV[7])
  redis.call("PEXPIRE", KEYS[2], ARGV[7])
end
redis.call("PUBLISH", ARGV[3], offset .. "\\t" .. epoch .. "\\t" .. ARGV[4] .. "\\t" .. ARGV[5] .. "\\n" .. ARGV[1])
return { offset, epoch }
`
  }
).withReturnType<readonly [offset: number, epoch: string]>()

const replayScript = Redis.script(
  (meta: string, history: string, epoch: string, ttl: number) => [meta, history, epoch, ttl],
  {
    numberOfKeys: 2,
    lua: `
local epoch = redis.call("HGET", KEYS[1], "e")
if not epoch then
  epoch = ARGV[1]
  redis.call("HSET", KEYS[1], "e", epoch, "o", 0)
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
local last = tonumber(redis.call("HGET", KEYS[1], "o") or "0")
return { epoch, last, redis.call("LRANGE", KEYS[2], 0, -1) }
`
  }
).withReturnType<readonly [epoch: string, last: number, entries: ReadonlyArray<string>]>()

const failure = (reason: string) => (cause: unknown) => new PubSub.PubSubError({ reason, cause })

// `offset \t epoch \t except \t topic \n payload`: a header no JSON value can break (the topic's
// key is JSON text, whose strings escape tabs and newlines), then the payload as published.
const parseEvent = (message: string): PubSub.Event | undefined => {
  const newline = message.indexOf("\n")
  if (newline === -1) return undefined
  const [offset, epoch, except, topic] = message.slice(0, newline).split("\t")
  if (topic === undefined) return undefined
  return {
    topic,
    payload: message.slice(newline + 1),
    offset: Number(offset),
    epoch: epoch ?? "",
    except: except === "" ? undefined : except
  }
}

// HGETALL comes back as a flat array (RESP2), a Map (RESP3) or an object, depending on the client.
const hashEntries = (reply: unknown): ReadonlyArray<readonly [string, string]> => {
  if (Array.isArray(reply)) {
    const pairs: Array<readonly [string, string]> = []
    for (let i = 0; i + 1 < reply.length; i += 2) pairs.push([String(reply[i]), String(reply[i + 1])])
    return pairs
  }
  if (reply instanceof Map) return Array.from(reply, ([k, v]) => [String(k), String(v)] as const)
  if (typeof reply === "object" && reply !== null) {
    return Object.entries(reply).map(([k, v]) => [k, String(v)] as const)
  }
  return []
}

/**
 * Makes the Redis fan-out on Effect's `Redis` service. The node's liveness key is refreshed for
 * as long as the scope is open, and removed with its members when it closes.
 *
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<PubSub.PubSub["Service"], never, Redis.Redis | Scope.Scope> =>
  Effect.gen(function* () {
    const redis = yield* Redis.Redis
    const prefix = options.prefix ?? "strata:ws:"
    const ttl = Duration.toMillis(Duration.fromInputUnsafe(options.ttl ?? "24 hours"))
    const nodeTtl = Duration.toMillis(Duration.fromInputUnsafe(options.nodeTtl ?? "15 seconds"))
    const node = PubSub.makeEpoch()
    const channel = `${prefix}events`
    const metaKey = (topic: string) => `${prefix}topic:${topic}`
    const historyKey = (topic: string) => `${prefix}history:${topic}`
    const presenceKey = (topic: string) => `${prefix}presence:${topic}`
    const nodeKey = (id: string) => `${prefix}node:${id}`
    const publish = redis.eval(publishScript)
    const replay = redis.eval(replayScript)
    // This node's members, removed when it stops.
    const members = new Map<string, string>()

    const alive = Effect.ignore(redis.send("SET", nodeKey(node), "1", "PX", String(nodeTtl)))
    yield* alive
    yield* Effect.forkScoped(Effect.repeat(alive, Schedule.spaced(Math.max(1, Math.floor(nodeTtl / 3)))))
    yield* Effect.addFinalizer(() =>
      Effect.ignore(
        Effect.gen(function* () {
          yield* redis.send("DEL", nodeKey(node))
          for (const [id, topic] of members) yield* redis.send("HDEL", presenceKey(topic), id)
        })
      )
    )

    return {
      listen: (onEvent) =>
        Effect.gen(function* () {
          const queue = yield* redis.subscribe(channel)
          yield* Effect.forkScoped(
            Effect.forever(
              Effect.flatMap(Queue.take(queue), (message) => {
                const event = parseEvent(message.message)
                return event === undefined ? Effect.void : onEvent(event)
              })
            ).pipe(
              Effect.catchCause((cause) =>
                Effect.logError("the Redis subscription of the channel hub ended", cause)
              )
            )
          )
        }),
      publish: (input) =>
        publish(
          metaKey(input.topic),
          historyKey(input.topic),
          input.payload,
          input.history,
          channel,
          input.except ?? "",
          input.topic,
          PubSub.makeEpoch(),
          ttl
        ).pipe(
          Effect.map(([offset, epoch]) => ({ offset: Number(offset), epoch: String(epoch) })),
          Effect.mapError(failure("cannot publish through Redis"))
        ),
      replay: (topic, from) =>
        replay(metaKey(topic), historyKey(topic), PubSub.makeEpoch(), ttl).pipe(
          Effect.map(([epoch, last, entries]) => {
            const events = entries.map((entry) => {
              const colon = entry.indexOf(":")
              return { offset: Number(entry.slice(0, colon)), payload: entry.slice(colon + 1) }
            })
            return PubSub.replayFrom(String(epoch), Number(last), events, from)
          }),
          Effect.mapError(failure("cannot read a topic's history from Redis"))
        ),
      presence: {
        join: (topic, member) =>
          Effect.gen(function* () {
            members.set(member.id, topic)
            yield* redis.send(
              "HSET",
              presenceKey(topic),
              member.id,
              JSON.stringify({ n: node, m: member.meta })
            )
            yield* redis.send("PEXPIRE", presenceKey(topic), String(ttl))
          }).pipe(Effect.mapError(failure("cannot record presence in Redis"))),
        leave: (topic, id) =>
          Effect.suspend(() => {
            members.delete(id)
            return redis.send("HDEL", presenceKey(topic), id)
          }).pipe(Effect.asVoid, Effect.mapError(failure("cannot remove presence from Redis"))),
        list: (topic) =>
          Effect.gen(function* () {
            const reply = yield* redis.send<unknown>("HGETALL", presenceKey(topic))
            const entries: Array<{ readonly id: string; readonly node: string; readonly meta: string }> = []
            for (const [id, text] of hashEntries(reply)) {
              const value = JSON.parse(text) as { readonly n: string; readonly m: string }
              entries.push({ id, node: value.n, meta: value.m })
            }
            const nodes = Array.from(new Set(entries.map((e) => e.node)))
            const living = new Set<string>()
            for (const id of nodes) {
              if ((yield* redis.send<number>("EXISTS", nodeKey(id))) === 1) living.add(id)
            }
            // Members of nodes that stopped refreshing their key are gone: prune them.
            const dead = entries.filter((e) => !living.has(e.node)).map((e) => e.id)
            if (dead.length > 0) yield* redis.send("HDEL", presenceKey(topic), ...dead)
            return entries.filter((e) => living.has(e.node)).map((e) => ({ id: e.id, meta: e.meta }))
          }).pipe(Effect.mapError(failure("cannot read presence from Redis")))
      }
    } satisfies PubSub.PubSub["Service"]
  })

/**
 * The Redis fan-out on Effect's `Redis` service (from `NodeRedis.layer`, or your own client).
 *
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<PubSub.PubSub, never, Redis.Redis> =>
  Layer.effect(PubSub.PubSub, make(options))

/**
 * The Redis fan-out with its own node-redis client connected to `url` (`redis://host:6379`),
 * closed with the layer. Failing to connect fails the layer, so the app does not start without it.
 *
 * @example
 * ```ts
 * import * as PubSubRedis from "@strata/ws/PubSubRedis"
 *
 * App.serve(app).pipe(Hub.drainFirst, Layer.provide(Hub.layerWith()), Layer.provide(PubSubRedis.layerFromUrl("redis://127.0.0.1:6379")))
 * ```
 * @category layers
 */
export const layerFromUrl = (
  url: string,
  options?: Options
): Layer.Layer<PubSub.PubSub, PubSub.PubSubError> =>
  Layer.effect(PubSub.PubSub)(
    Effect.flatMap(
      Effect.mapError(
        Layer.build(NodeRedis.layer({ url })),
        (cause) => new PubSub.PubSubError({ reason: `cannot connect to Redis at ${url}`, cause })
      ),
      (context) => Effect.provideContext(make(options), context)
    )
  )
