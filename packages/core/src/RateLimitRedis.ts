/**
 * The Redis rate-limit store with its own node-redis client: counters shared by every instance of
 * an app, from a URL. Kept apart from `RateLimit` so that module needs no optional dependency.
 *
 * @since 0.1.0
 */
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RateLimit from "./RateLimit.ts"

/**
 * The Redis store (`RateLimit.layerRedis`) on a node-redis client connected to `url`
 * (`redis://host:6379`), closed with the layer. Failing to connect fails the layer with
 * `RateLimitStoreError`, so the app does not start with a store it cannot reach.
 *
 * @example
 * ```ts
 * import * as RateLimitRedis from "@strata/core/RateLimitRedis"
 *
 * App.serve(app).pipe(Layer.provide(RateLimitRedis.layerFromUrl("redis://127.0.0.1:6379", { prefix: "app:rl:" })))
 * ```
 * @category layers
 */
export const layerFromUrl = (
  url: string,
  options: RateLimit.RedisOptions = {}
): Layer.Layer<RateLimit.Store, RateLimit.StoreError> =>
  Layer.effect(RateLimit.Store)(
    Effect.flatMap(
      Effect.mapError(
        Layer.build(NodeRedis.layer({ url })),
        (cause) => new RateLimit.StoreError({ reason: `cannot connect to Redis at ${url}`, cause })
      ),
      (context) => Effect.provideContext(RateLimit.makeRedis(options), context)
    )
  )
