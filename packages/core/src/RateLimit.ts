/**
 * Rate limiting: a fixed-window or token-bucket quota per client (by IP, by user, by any key), kept
 * in memory or in Redis, advertised on every response with the IETF `RateLimit-Policy` and
 * `RateLimit` fields and answered with 429 and `Retry-After` when spent.
 *
 * Use it on a router: `Router.use(RateLimit.middleware({ limit: 100, window: "1 minute" }))`, and give
 * the app a store (`RateLimit.layerMemory()` for one process, `RateLimit.layerRedis()` for several).
 *
 * What is reused from `effect/persistence`: the `Redis` service (its `Redis.script` descriptors,
 * cached `EVALSHA` and `NOSCRIPT` recovery) for the Redis store. What is not: `RateLimiter` and its
 * `RateLimiterStore`, because (1) its memory store keeps every key it ever saw (its maps are never
 * swept), which a server keyed by client IP cannot afford; (2) its Redis fixed window counts time
 * with Redis' own `PTTL` while its memory store and token bucket use the Effect `Clock`, so a window
 * could not be moved with `TestClock` and the two stores would not behave alike; (3) its
 * "fixed-window" extends the window by `window / limit` per request, so the reset a client is told
 * is not a window boundary; (4) it would drag its adaptive-feedback state into a store interface
 * this middleware does not use. The two algorithms here are small, written once in TypeScript
 * (memory) and once in Lua (Redis), and both take `now` from the Effect `Clock`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import type * as HttpRouter from "effect/http/HttpRouter"
import * as HttpEffect from "effect/http/HttpEffect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as IpNetwork from "effect/net/IpNetwork"
import * as NetAddress from "effect/net/NetAddress"
import * as Redis from "effect/persistence/Redis"
import * as HttpError from "./HttpError.ts"
import * as Middleware from "./Middleware.ts"

// ---------------------------------------------------------------------------------------------------
// Algorithms
// ---------------------------------------------------------------------------------------------------

/**
 * How the quota is counted.
 *
 * - `fixed-window`: at most `limit` units per window; the window starts with a client's first
 *   request and the whole quota comes back when it ends.
 * - `token-bucket`: a bucket of `limit` units, refilled continuously at `limit` per `window`; bursts
 *   up to `limit`, then a steady `limit / window`.
 *
 * @category models
 */
export type Algorithm = "fixed-window" | "token-bucket"

/**
 * One request's claim on a quota, as a store receives it.
 *
 * @category models
 */
export interface ConsumeRequest {
  /** The counter's key: the policy name and the client's key. */
  readonly key: string
  readonly algorithm: Algorithm
  /** Quota units per window (the bucket's capacity). */
  readonly limit: number
  /** The window (the time to refill an empty bucket), in milliseconds. */
  readonly windowMillis: number
  /** Units this request takes. */
  readonly cost: number
  /** Epoch milliseconds from the Effect `Clock`, so every store counts the same time. */
  readonly now: number
}

/**
 * What a store decided.
 *
 * @category models
 */
export interface Decision {
  readonly allowed: boolean
  /** Units left after this request (a bucket's may be fractional). */
  readonly remaining: number
  /** Milliseconds until the whole quota is back (the window ends, the bucket is full). */
  readonly resetAfter: number
  /** Milliseconds until a request of this cost would be allowed; 0 when it was. */
  readonly retryAfter: number
}

// Refill arithmetic in doubles leaves 0.9999999999 where 1 is meant; both stores forgive that much.
const epsilon = 1e-9

interface State {
  /** fixed window: units used; token bucket: units left */
  readonly units: number
  /** fixed window: when the window ends; token bucket: when `units` was measured */
  readonly at: number
  /** when the state is no different from none, so it can be dropped */
  readonly expiresAt: number
}

// One step of an algorithm: the state after the request and the decision. The Redis store's Lua
// script mirrors it, so both stores decide alike.
const step = (
  state: State | undefined,
  request: ConsumeRequest
): { readonly state: State | undefined; readonly decision: Decision } => {
  const { limit, windowMillis: window, cost, now } = request
  if (request.algorithm === "fixed-window") {
    const fresh = state === undefined || state.at <= now
    const used = fresh ? 0 : state.units
    const reset = fresh ? now + window : state.at
    const resetAfter = reset - now
    if (used + cost <= limit + epsilon) {
      const units = used + cost
      return {
        state: { units, at: reset, expiresAt: reset },
        decision: { allowed: true, remaining: limit - units, resetAfter, retryAfter: 0 }
      }
    }
    return {
      state: fresh ? undefined : state,
      decision: { allowed: false, remaining: limit - used, resetAfter, retryAfter: resetAfter }
    }
  }
  let tokens = state === undefined ? limit : state.units
  const measured = state === undefined ? now : state.at
  // Time going backwards (another instance's clock) refills nothing.
  if (now > measured) tokens = Math.min(limit, tokens + ((now - measured) * limit) / window)
  const at = Math.max(now, measured)
  const allowed = tokens + epsilon >= cost
  if (allowed) tokens = Math.max(0, tokens - cost)
  const resetAfter = Math.ceil(((limit - tokens) * window) / limit)
  const retryAfter = allowed ? 0 : Math.ceil(((cost - tokens) * window) / limit)
  return {
    state: allowed ? { units: tokens, at, expiresAt: at + resetAfter } : state,
    decision: { allowed, remaining: tokens, resetAfter, retryAfter }
  }
}

// ---------------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------------

/**
 * A store failed (unreachable, timed out, a key holding something else). The middleware never lets
 * it reach the client: it lets the request through (`fail-open`) or answers 503 (`fail-closed`).
 *
 * @category errors
 */
export class StoreError extends Data.TaggedError("RateLimitStoreError")<{
  readonly reason: string
  readonly cause?: unknown
}> {}

/**
 * Where counters live. `consume` checks and takes a request's units in one atomic step.
 *
 * @category services
 */
export class Store extends Context.Service<
  Store,
  { readonly consume: (request: ConsumeRequest) => Effect.Effect<Decision, StoreError> }
>()("@strata/core/RateLimit/Store") {}

/**
 * Options of the memory store.
 *
 * @category models
 */
export interface MemoryOptions {
  /**
   * The most keys kept; default 100 000. When a new key would pass it, the least recently used key
   * is forgotten (that client starts afresh), so memory stays bounded whatever clients send.
   */
  readonly maxKeys?: number | undefined
  /** How often keys whose window ended or bucket refilled are dropped; default one minute. */
  readonly sweepEvery?: Duration.Input | undefined
}

/**
 * The memory store, with its current number of keys (for metrics and tests).
 *
 * @category models
 */
export interface MemoryStore {
  readonly consume: Store["Service"]["consume"]
  readonly size: Effect.Effect<number>
}

/**
 * Makes a memory store. Keys are kept in least-recently-used order; stale keys (nothing different
 * from a fresh client) are swept on the first request after each `sweepEvery`, measured on the
 * time requests carry, so no background fiber runs and `TestClock` drives it.
 *
 * @category constructors
 */
export const makeMemory = (options: MemoryOptions = {}): Effect.Effect<MemoryStore> =>
  Effect.sync(() => {
    const maxKeys = options.maxKeys ?? 100_000
    if (!Number.isInteger(maxKeys) || maxKeys < 1)
      throw new Error(`RateLimit: maxKeys must be ≥ 1: ${maxKeys}`)
    const sweepEvery = Duration.toMillis(Duration.fromInputUnsafe(options.sweepEvery ?? "1 minute"))
    const states = new Map<string, State>()
    let nextSweep = Number.NEGATIVE_INFINITY
    const sweep = (now: number) => {
      for (const [key, state] of states) if (state.expiresAt <= now) states.delete(key)
      nextSweep = now + sweepEvery
    }
    return {
      consume: (request) =>
        Effect.sync(() => {
          if (request.now >= nextSweep) sweep(request.now)
          const before = states.get(request.key)
          const { state, decision } = step(before, request)
          // Delete and set again: a Map iterates in insertion order, so the first key is the least
          // recently used.
          states.delete(request.key)
          if (state !== undefined && state.expiresAt > request.now) {
            states.set(request.key, state)
            while (states.size > maxKeys) states.delete(states.keys().next().value!)
          }
          return decision
        }),
      size: Effect.sync(() => states.size)
    }
  })

/**
 * The memory store as the app's store: counters of one process, bounded by `maxKeys`. Use it when
 * the app runs as one process; with several, each would count on its own (use `layerRedis`).
 *
 * @category layers
 */
export const layerMemory = (options: MemoryOptions = {}): Layer.Layer<Store> =>
  Layer.effect(Store)(Effect.map(makeMemory(options), (store) => Store.of({ consume: store.consume })))

/**
 * Options of the Redis store.
 *
 * @category models
 */
export interface RedisOptions {
  /** Prepended to every key; default `strata:ratelimit:`. */
  readonly prefix?: string | undefined
}

const consumeScript = Redis.script(
  (key: string, algorithm: Algorithm, limit: number, window: number, cost: number, now: number) => [
    key,
    algorithm,
    limit,
    window,
    cost,
    now,
    epsilon
  ],
  {
    numberOfKeys: 1,
    lua: `
local key = KEYS[1]
local algorithm = ARGV[1]
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local epsilon = tonumber(ARGV[6])
local function num(x) return string.format("%.17g", x) end
local state = redis.call("HMGET", key, "units", "at")
local units = tonumber(state[1])
local at = tonumber(state[2])
if algorithm == "fixed-window" then
  if not units or not at or at <= now then
    units = 0
    at = now + window
  end
  local reset_after = at - now
  if units + cost <= limit + epsilon then
    units = units + cost
    redis.call("HSET", key, "units", num(units), "at", num(at))
    redis.call("PEXPIRE", key, math.max(1, math.ceil(reset_after)))
    return { 1, num(limit - units), num(reset_after), "0" }
  end
  return { 0, num(limit - units), num(reset_after), num(reset_after) }
end
local tokens = limit
local measured = now
if units and at then
  tokens = units
  measured = at
end
if now > measured then
  tokens = math.min(limit, tokens + ((now - measured) * limit) / window)
end
at = math.max(now, measured)
local allowed = tokens + epsilon >= cost
if allowed then
  tokens = math.max(0, tokens - cost)
end
local reset_after = math.ceil(((limit - tokens) * window) / limit)
if allowed then
  redis.call("HSET", key, "units", num(tokens), "at", num(at))
  redis.call("PEXPIRE", key, math.max(1, reset_after))
  return { 1, num(tokens), num(reset_after), "0" }
end
return { 0, num(tokens), num(reset_after), num(math.ceil(((cost - tokens) * window) / limit)) }
`
  }
).withReturnType<readonly [allowed: number, remaining: string, resetAfter: string, retryAfter: string]>()

/**
 * Makes a Redis store on Effect's `Redis` service.
 *
 * @category constructors
 */
export const makeRedis = (options: RedisOptions = {}): Effect.Effect<Store["Service"], never, Redis.Redis> =>
  Effect.map(Redis.Redis, (redis) => {
    const prefix = options.prefix ?? "strata:ratelimit:"
    const consume = redis.eval(consumeScript)
    return Store.of({
      consume: (request) =>
        consume(
          `${prefix}${request.key}`,
          request.algorithm,
          request.limit,
          request.windowMillis,
          request.cost,
          request.now
        ).pipe(
          Effect.map(([allowed, remaining, resetAfter, retryAfter]) => ({
            allowed: Number(allowed) === 1,
            remaining: Number(remaining),
            resetAfter: Number(resetAfter),
            retryAfter: Number(retryAfter)
          })),
          Effect.mapError((cause) => new StoreError({ reason: "Redis failed", cause }))
        )
    })
  })

/**
 * The Redis store: counters shared by every instance of the app. Each counter is a hash under
 * `${prefix}${policy}:${key}`, checked and updated by one Lua script (atomic, so concurrent requests
 * on any instance never overspend), with a `PEXPIRE` that ends when it would be fresh again. Time
 * comes from the Effect `Clock` of the instance that asks (keep instances' clocks in sync, as NTP
 * does); a clock a little behind refills nothing rather than too much.
 *
 * @example
 * ```ts
 * import * as NodeRedis from "@effect/platform-node/NodeRedis"
 *
 * const store = RateLimit.layerRedis({ prefix: "app:rl:" }).pipe(
 *   Layer.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379" }))
 * )
 * ```
 * @category layers
 */
export const layerRedis = (options: RedisOptions = {}): Layer.Layer<Store, never, Redis.Redis> =>
  Layer.effect(Store)(makeRedis(options))

// ---------------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------------

/**
 * @category type ids
 */
export const KeyTypeId = "~@strata/core/RateLimit/Key" as const

/**
 * Which client a request counts against. `R` is what reading the key needs (`CurrentUser` for
 * `byService(CurrentUser, …)`), and the middleware requires it.
 *
 * @category models
 */
export interface Key<out R> {
  readonly [KeyTypeId]: typeof KeyTypeId
  /** For the manifest: what the key is made of. */
  readonly description: string
  /** The request-scoped services it reads, for the manifest. */
  readonly requires: ReadonlyArray<Context.Key<any, any>>
  readonly get: (request: HttpServerRequest.HttpServerRequest) => Effect.Effect<string, never, R>
}

/**
 * A key as a plain function of the request.
 *
 * @category models
 */
export type KeyFunction<R> = (request: HttpServerRequest.HttpServerRequest) => Effect.Effect<string, never, R>

type IdentifierOf<K> = K extends Context.Key<infer I, any> ? I : never

/**
 * The key `byEffect` returns once it checked that `requires` names every request-scoped service the
 * function reads; otherwise a message.
 *
 * @category models
 */
export type CheckedKey<R, Declared> = [Exclude<Extract<R, Middleware.RequestScoped>, Declared>] extends [
  never
]
  ? Key<Exclude<R, HttpRouter.Provided>>
  : {
      readonly "⛔ rate limit key": `requires must list ${Middleware.KeyOf<Exclude<Extract<R, Middleware.RequestScoped>, Declared>>}, which the key reads`
    }

const makeKey = <R>(
  description: string,
  requires: ReadonlyArray<Context.Key<any, any>>,
  get: KeyFunction<R>
): Key<R> => ({ [KeyTypeId]: KeyTypeId, description, requires, get })

const keyName = (key: Context.Key<any, any>): string => (key as { readonly key?: string }).key ?? String(key)

const parseIp = (text: string): NetAddress.IpAddress | undefined => {
  const bare = text.startsWith("[") ? text.slice(1, text.indexOf("]")) : text
  const zoneless = bare.includes("%") ? bare.slice(0, bare.indexOf("%")) : bare
  const ip = NetAddress.ipFromString(zoneless)
  return Result.isSuccess(ip) ? NetAddress.toCanonical(ip.success) : undefined
}

/**
 * The key of a request without a `remoteAddress` (an in-process request, a Unix socket): such
 * requests share one quota.
 *
 * @category constants
 */
export const unknownAddress = "unknown"

/**
 * Keys by the client's IP address: `HttpServerRequest.remoteAddress`, which `TrustedProxy` replaces
 * with the forwarded client address when it runs first. IPv4-mapped IPv6 addresses count as IPv4;
 * IPv6 addresses are grouped by their `/ipv6Subnet` network (default 64), since one client usually
 * holds a whole /64 and could otherwise take a fresh address per request (`128` turns this off).
 *
 * @example
 * ```ts
 * Router.use(TrustedProxy.middleware({ trusted: ["10.0.0.0/8"] }), RateLimit.middleware({ limit: 100, window: "1 minute", key: RateLimit.byIp() }))
 * ```
 * @category keys
 */
export const byIp = (options: { readonly ipv6Subnet?: number | undefined } = {}): Key<never> => {
  const subnet = options.ipv6Subnet ?? 64
  if (!Number.isInteger(subnet) || subnet < 1 || subnet > 128) {
    throw new Error(`RateLimit.byIp: ipv6Subnet must be 1 to 128: ${subnet}`)
  }
  const format = (text: string): string => {
    const ip = parseIp(text)
    if (ip === undefined) return text
    if (NetAddress.isIpv6Address(ip) && subnet < 128) {
      const network = IpNetwork.fromAddress(ip, subnet)
      if (Result.isSuccess(network)) return IpNetwork.format(network.success)
    }
    return NetAddress.formatIp(ip)
  }
  return makeKey(`ip`, [], (request) =>
    Effect.succeed(Option.match(request.remoteAddress, { onNone: () => unknownAddress, onSome: format }))
  )
}

/**
 * Keys by a value of a service, usually the authenticated user. The middleware then requires that
 * service, so it must run after the middleware that provides it (auth); before it, or without it,
 * the app does not compile.
 *
 * @example
 * ```ts
 * Router.use(session, auth, RateLimit.middleware({ limit: 1000, window: "1 hour", key: RateLimit.byService(CurrentUser, (u) => u.id) }))
 * ```
 * @category keys
 */
export const byService = <I, S>(service: Context.Key<I, S>, f: (value: S) => string): Key<I> =>
  makeKey(`service(${keyName(service)})`, [service], () => Effect.map(service, f))

/**
 * Keys by any effect of the request (an API key header, a tenant). List in `requires` each
 * request-scoped service it reads; the compiler checks the list is complete.
 *
 * @example
 * ```ts
 * const byTenant = RateLimit.byEffect((request) => Effect.map(Tenant, (t) => t.id), { requires: [Tenant] })
 * ```
 * @category keys
 */
export const byEffect = <R, const Requires extends ReadonlyArray<Context.Key<any, any>> = readonly []>(
  f: KeyFunction<R>,
  options: { readonly requires?: Requires | undefined; readonly description?: string | undefined } = {}
): CheckedKey<R, IdentifierOf<Requires[number]>> =>
  makeKey(options.description ?? "custom", options.requires ?? [], f) as any

// ---------------------------------------------------------------------------------------------------
// Middleware
// ---------------------------------------------------------------------------------------------------

/**
 * What to do when the store fails.
 *
 * - `fail-open` (default): let the request through, without a `RateLimit` field, and log a warning.
 *   An outage of the store does not become an outage of the app.
 * - `fail-closed`: answer 503 Service Unavailable. For limits that guard something costly or abusable
 *   (logins, SMS), where letting everything through is worse than refusing.
 *
 * @category models
 */
export type OnStoreError = "fail-open" | "fail-closed"

/**
 * Options of the rate limit middleware.
 *
 * @category models
 */
export interface Options<F extends OnStoreError = OnStoreError> {
  /**
   * The policy's name in the `RateLimit-Policy` and `RateLimit` fields, and the namespace of its
   * counters: middleware with the same name (and store) share one quota. Default `default`.
   */
  readonly name?: string | undefined
  /** Default `fixed-window`. */
  readonly algorithm?: Algorithm | undefined
  /** Quota units per window: requests, when each costs 1. */
  readonly limit: number
  /** The window; for a token bucket, the time an empty bucket takes to refill. Whole seconds read best in the headers. */
  readonly window: Duration.Input
  /** Units a request takes; default 1. A request costing more than `limit` is always refused. */
  readonly cost?: number | ((request: HttpServerRequest.HttpServerRequest) => number) | undefined
  /** Default `fail-open`. */
  readonly onStoreError?: F | undefined
  /** A store slower than this counts as failed; default 1 second. */
  readonly storeTimeout?: Duration.Input | undefined
}

/**
 * The errors the middleware raises: `RateLimited` (429), and `ServiceUnavailable` (503) when it
 * fails closed.
 *
 * @category models
 */
export type Errors<F extends OnStoreError> =
  HttpError.RateLimited | (F extends "fail-closed" ? HttpError.ServiceUnavailable : never)

/**
 * A rate limit middleware: it requires `R`, what its key reads (nothing for `byIp`, `CurrentUser`
 * for `byService(CurrentUser, …)`), and needs a `Store` from the app's layer.
 *
 * @category models
 */
export type Limiter<R, F extends OnStoreError = "fail-open"> = Middleware.Middleware<
  never,
  R,
  Errors<F>,
  never,
  never,
  Store
>

/**
 * The middleware for a plain-function key: one that reads a request-scoped service does not compile
 * (use `byService`, or `byEffect` with `requires`, so the manifest can name what it reads).
 *
 * @category models
 */
export type FunctionKeyed<R, F extends OnStoreError> = [Extract<R, Middleware.RequestScoped>] extends [never]
  ? Limiter<Exclude<R, HttpRouter.Provided>, F>
  : {
      readonly "⛔ rate limit key": `the key reads ${Middleware.KeyOf<Extract<R, Middleware.RequestScoped>>}: use RateLimit.byService or RateLimit.byEffect(f, { requires })`
    }

// An sf-string (RFC 9651) holds printable ASCII; `"` and `\` are escaped.
const sfString = (value: string): string => `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`

const appendHeader = (
  response: HttpServerResponse.HttpServerResponse,
  name: string,
  value: string
): HttpServerResponse.HttpServerResponse => {
  const existing = response.headers[name]
  return HttpServerResponse.setHeader(
    response,
    name,
    existing === undefined ? value : `${existing}, ${value}`
  )
}

const validCost = (cost: number): number => {
  if (!Number.isFinite(cost) || cost < 0)
    throw new Error(`RateLimit: cost must be a finite number ≥ 0: ${cost}`)
  return cost
}

const seconds = (millis: number): number => Math.max(0, Math.ceil(millis / 1000 - epsilon))

/**
 * The `RateLimit-Policy` field value of a policy (draft-ietf-httpapi-ratelimit-headers):
 * `"name";q=limit;w=window-seconds`.
 *
 * @category headers
 */
export const policyHeader = (name: string, limit: number, windowMillis: number): string =>
  `${sfString(name)};q=${Math.floor(limit)};w=${Math.max(1, seconds(windowMillis))}`

/**
 * The `RateLimit` field value after a decision: `"name";r=remaining;t=seconds-until-the-quota-is-back`.
 *
 * @category headers
 */
export const rateLimitHeader = (name: string, decision: Decision): string =>
  `${sfString(name)};r=${Math.max(0, Math.floor(decision.remaining + epsilon))};t=${seconds(decision.resetAfter)}`

/**
 * Limits requests per client. Every response it sees (allowed, refused, or an error from inside)
 * carries `RateLimit-Policy` and `RateLimit`; a refused request fails with `HttpError.RateLimited`
 * (429) whose `Retry-After` says when a request of its cost would pass. Time comes from the Effect
 * `Clock`. Needs a `Store` (`layerMemory`, `layerRedis`) in the app's layer.
 *
 * @example
 * ```ts
 * const perUser = RateLimit.middleware({
 *   name: "user",
 *   algorithm: "token-bucket",
 *   limit: 600,
 *   window: "1 minute",
 *   key: RateLimit.byService(CurrentUser, (u) => u.id)
 * })
 * const api = Router.group("/api", routes).pipe(Router.use(session, auth, perUser))
 * App.serve(api).pipe(Layer.provide(RateLimit.layerMemory()))
 * ```
 * @category middleware
 */
export const middleware: {
  <R, F extends OnStoreError = "fail-open">(
    options: Options<F> & {
      /** Which client a request counts against. */
      readonly key: KeyFunction<R>
    }
  ): FunctionKeyed<R, F>
  <R = never, F extends OnStoreError = "fail-open">(
    options: Options<F> & {
      /** Which client a request counts against; default `byIp()`. */
      readonly key?: Key<R> | undefined
    }
  ): Limiter<R, F>
} = (options: Options & { readonly key?: Key<any> | KeyFunction<any> | undefined }): any => {
  const name = options.name ?? "default"
  if (!/^[\x20-\x7e]+$/.test(name)) throw new Error(`RateLimit: the name must be printable ASCII: ${name}`)
  const algorithm = options.algorithm ?? "fixed-window"
  const limit = options.limit
  if (!Number.isFinite(limit) || limit <= 0) throw new Error(`RateLimit: limit must be positive: ${limit}`)
  const windowMillis = Duration.toMillis(Duration.fromInputUnsafe(options.window))
  if (!Number.isFinite(windowMillis) || windowMillis <= 0) {
    throw new Error(`RateLimit: window must be positive and finite: ${String(options.window)}`)
  }
  const key: Key<any> =
    options.key === undefined
      ? byIp()
      : typeof options.key === "function"
        ? makeKey("custom", [], options.key)
        : options.key
  const cost = options.cost ?? 1
  if (typeof cost === "number") validCost(cost)
  const failClosed = options.onStoreError === "fail-closed"
  const storeTimeout = Duration.fromInputUnsafe(options.storeTimeout ?? "1 second")
  const policy = policyHeader(name, limit, windowMillis)
  // During an outage every request fails the same way: one warning per 10 s, with how many it stands for.
  let lastWarning = Number.NEGATIVE_INFINITY
  let unreported = 0
  const warn = (message: string, error: StoreError, now: number) => {
    unreported++
    if (now - lastWarning < 10_000) return Effect.void
    const failures = unreported
    lastWarning = now
    unreported = 0
    return Effect.logWarning(message, error).pipe(
      Effect.annotateLogs({ rateLimitPolicy: name, reason: error.reason, failures })
    )
  }

  return Middleware.effect({
    name: `rateLimit(${name}, ${algorithm}, ${limit}/${Duration.format(Duration.millis(windowMillis))}, ${key.description})`,
    raises: failClosed ? ["RateLimited", "ServiceUnavailable"] : ["RateLimited"],
    requires: key.requires,
    build: Effect.map(
      Store,
      (store) => (next: Effect.Effect<HttpServerResponse.HttpServerResponse, any, any>) =>
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          const clientKey = yield* key.get(request)
          const units = typeof cost === "function" ? validCost(cost(request)) : cost
          const now = yield* Clock.currentTimeMillis
          const outcome = yield* Effect.result(
            store
              .consume({ key: `${name}:${clientKey}`, algorithm, limit, windowMillis, cost: units, now })
              .pipe(
                Effect.timeoutOrElse({
                  duration: storeTimeout,
                  orElse: () =>
                    Effect.fail(
                      new StoreError({ reason: `no answer within ${Duration.format(storeTimeout)}` })
                    )
                })
              )
          )
          if (Result.isFailure(outcome)) {
            const withPolicy = HttpEffect.withPreResponseHandler((_request, response) =>
              Effect.succeed(appendHeader(response, "ratelimit-policy", policy))
            )
            if (failClosed) {
              yield* warn("rate limit store failed; request refused (fail-closed)", outcome.failure, now)
              return yield* withPolicy(
                Effect.fail(new HttpError.ServiceUnavailable({ reason: "rate limit store unavailable" }))
              )
            }
            yield* warn("rate limit store failed; request let through (fail-open)", outcome.failure, now)
            return yield* withPolicy(next)
          }
          const decision = outcome.success
          const current = rateLimitHeader(name, decision)
          const withHeaders = HttpEffect.withPreResponseHandler((_request, response) =>
            Effect.succeed(
              appendHeader(appendHeader(response, "ratelimit-policy", policy), "ratelimit", current)
            )
          )
          if (!decision.allowed) {
            return yield* withHeaders(
              Effect.fail(
                new HttpError.RateLimited({ retryAfter: Math.max(1, seconds(decision.retryAfter)) })
              )
            )
          }
          return yield* withHeaders(next)
        })
    )
  })
}
