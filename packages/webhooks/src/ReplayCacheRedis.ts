/**
 * The receiver's replay cache in Redis, on Effect's `Redis` service: delivery ids shared by every
 * instance that receives the same webhooks, forgotten by Redis itself when their window ends.
 *
 * @since 0.1.0
 */
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redis from "effect/persistence/Redis"
import * as Receiver from "./Receiver.ts"

/**
 * Options of the Redis replay cache.
 *
 * @category models
 */
export interface Options {
  /** Prepended to each delivery key; default `strata:webhook:`. */
  readonly prefix?: string | undefined
}

// Reading the state and claiming must be one step, or two instances given the same delivery at
// once could both claim it.
const claimScript = `
local state = redis.call('GET', KEYS[1])
if state then return state end
redis.call('SET', KEYS[1], 'pending', 'PX', ARGV[1])
return 'claimed'`

// Only a claim still pending is released: a delivery completed meanwhile stays remembered.
const releaseScript = `
if redis.call('GET', KEYS[1]) == 'pending' then redis.call('DEL', KEYS[1]) end
return 1`

const unavailable = (cause: unknown) => new Receiver.ReplayCacheUnavailable({ cause })

// Redis refuses a time to live of zero.
const ttlOf = (ttl: Duration.Duration): string => String(Math.max(1, Math.ceil(Duration.toMillis(ttl))))

const make = (options: Options) =>
  Effect.map(Effect.service(Redis.Redis), (redis) => {
    const prefix = options.prefix ?? "strata:webhook:"
    return Receiver.ReplayCache.of({
      claim: (key, ttl) =>
        redis.send<string>("EVAL", claimScript, "1", `${prefix}${key}`, ttlOf(ttl)).pipe(
          Effect.map((state): Receiver.ClaimResult =>
            state === "claimed" ? "claimed" : state === "done" ? "done" : "pending"
          ),
          Effect.mapError(unavailable)
        ),
      complete: (key, ttl) =>
        redis
          .send("SET", `${prefix}${key}`, "done", "PX", ttlOf(ttl))
          .pipe(Effect.asVoid, Effect.mapError(unavailable)),
      release: (key) =>
        redis
          .send("EVAL", releaseScript, "1", `${prefix}${key}`)
          .pipe(Effect.asVoid, Effect.mapError(unavailable))
    })
  })

/**
 * The Redis replay cache on the app's `Redis` service. The window is a `PX` time to live measured on
 * our side, so Redis drops each id by itself. A Redis failure is `ReplayCacheUnavailable` (503): the
 * receiver fails closed and the sender retries.
 *
 * @example
 * ```ts
 * import * as NodeRedis from "@effect/platform-node/NodeRedis"
 * const cache = ReplayCacheRedis.layer().pipe(Layer.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379" })))
 * ```
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Receiver.ReplayCache, never, Redis.Redis> =>
  Layer.effect(Receiver.ReplayCache)(make(options))

/**
 * The Redis replay cache with its own node-redis client connected to `url` (`redis://host:6379`),
 * closed with the layer. Failing to connect fails the layer, so the receiver does not start without
 * its cache.
 *
 * @category layers
 */
export const layerFromUrl = (
  url: string,
  options: Options = {}
): Layer.Layer<Receiver.ReplayCache, Receiver.ReplayCacheUnavailable> =>
  Layer.effect(Receiver.ReplayCache)(
    Effect.flatMap(Effect.mapError(Layer.build(NodeRedis.layer({ url })), unavailable), (context) =>
      Effect.provideContext(make(options), context)
    )
  )
