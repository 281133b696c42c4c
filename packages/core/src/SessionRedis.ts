/**
 * A session store in Redis, on Effect's `Redis` service: sessions shared by every instance of an app
 * and dropped by Redis itself when they expire. Use it when the app runs on more than one process.
 *
 * @since 0.1.0
 */
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Redis from "effect/persistence/Redis"
import * as Session from "./Session.ts"

/**
 * Options of the Redis store.
 *
 * @category models
 */
export interface Options {
  /** Prepended to the session id to make the key; default `strata:session:`. */
  readonly prefix?: string | undefined
}

const StoredSession = Schema.fromJsonString(
  Schema.Struct({
    data: Schema.String,
    meta: Schema.Record(Schema.String, Schema.String),
    createdAt: Schema.Number,
    expiresAt: Schema.Number
  })
)
const decode = Schema.decodeUnknownEffect(StoredSession)

const storeError = (cause: unknown) => new Session.StoreError({ cause })

const make = (options: Options) =>
  Effect.map(Redis.Redis, (redis) => {
    const prefix = options.prefix ?? "strata:session:"
    const key = (id: string) => `${prefix}${id}`
    return Session.Store.of({
      get: (id) =>
        Effect.gen(function* () {
          const text = yield* redis.send<string | null>("GET", key(id))
          if (text === null) return Option.none()
          const record = yield* decode(text)
          const now = yield* Clock.currentTimeMillis
          return record.expiresAt > now ? Option.some(record) : Option.none()
        }).pipe(Effect.mapError(storeError)),
      set: (id, record) =>
        Effect.gen(function* () {
          const ttl = Math.ceil(record.expiresAt - (yield* Clock.currentTimeMillis))
          // Redis refuses a time to live of zero; a record already expired is simply not kept.
          if (ttl <= 0) return yield* redis.send("DEL", key(id))
          return yield* redis.send("SET", key(id), JSON.stringify(record), "PX", String(ttl))
        }).pipe(Effect.asVoid, Effect.mapError(storeError)),
      delete: (id) => redis.send("DEL", key(id)).pipe(Effect.asVoid, Effect.mapError(storeError))
    })
  })

/**
 * A session store in Redis: each session is a JSON string under `${prefix}${id}`, written with a
 * `PX` time to live that ends at its `expiresAt`, so Redis forgets it by itself. The time to live
 * is measured by the Effect `Clock` (not `PXAT` on the Redis server's clock), so clock skew between
 * app and Redis does not shift expiry; a record whose `expiresAt` has passed is never returned.
 * Redis failures and values that are not sessions are `SessionStoreError` (503).
 *
 * @example
 * ```ts
 * import * as NodeRedis from "@effect/platform-node/NodeRedis"
 * import * as SessionRedis from "@strata/core/SessionRedis"
 *
 * const store = SessionRedis.layer({ prefix: "app:sid:" }).pipe(
 *   Layer.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379" }))
 * )
 * ```
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Session.Store, never, Redis.Redis> =>
  Layer.effect(Session.Store)(make(options))

/**
 * The Redis store with its own node-redis client connected to `url` (`redis://host:6379`), closed
 * with the layer. Failing to connect fails the layer with `SessionStoreError`.
 *
 * @example
 * ```ts
 * import * as SessionRedis from "@strata/core/SessionRedis"
 *
 * const handler = App.toWebHandler(app, SessionRedis.layerFromUrl("redis://127.0.0.1:6379"))
 * ```
 * @category layers
 */
export const layerFromUrl = (
  url: string,
  options: Options = {}
): Layer.Layer<Session.Store, Session.StoreError> =>
  Layer.effect(Session.Store)(
    Effect.flatMap(Effect.mapError(Layer.build(NodeRedis.layer({ url })), storeError), (context) =>
      Effect.provideContext(make(options), context)
    )
  )
