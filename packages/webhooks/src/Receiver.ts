/**
 * Receiver middleware: verifies a webhook's signature over the raw body (Standard Webhooks v1/v1a,
 * Stripe or GitHub), checks its timestamp in both directions, refuses replays, decodes the event by
 * the catalog's Schemas and provides it to the handler as a typed request-scoped service.
 *
 * Failures and their statuses — 400 for a request that is malformed, 401 for one that is not
 * authentic or not fresh, 503 when the replay cache cannot answer:
 * - `MissingHeader` 400, `MalformedHeader` 400 (from `Signature`)
 * - `InvalidSignature` 401, `TimestampTooOld` 401, `TimestampTooNew` 401 (from `Signature`)
 * - `Replayed` 401: the delivery id was already accepted (or is being handled right now)
 * - `UnknownEventType` 400, `InvalidPayload` 400 (from `Catalog`)
 * - `ReplayCacheUnavailable` 503 (fail closed: the sender retries later)
 * - and the body reader's `PayloadTooLarge` 413 / `BadRequest` 400 / `UnsupportedMediaType` 415.
 *
 * Checks run in that order of trust: the signature before anything is parsed, the catalog before the
 * replay cache is written, so an unauthenticated client can neither fill the cache nor learn our clock.
 * No error body carries a signature, a secret or the computed value.
 *
 * @since 0.1.0
 */
import * as ByteSize from "effect/ByteSize"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Body, HttpError, Middleware } from "@strata/core"
import * as Catalog from "./Catalog.ts"
import * as Signature from "./Signature.ts"

export {
  InvalidSignature,
  MalformedHeader,
  MissingHeader,
  TimestampTooNew,
  TimestampTooOld
} from "./Signature.ts"
export { InvalidPayload, UnknownEventType } from "./Catalog.ts"

// ---------------------------------------------------------------------------------------------
// Schemes
// ---------------------------------------------------------------------------------------------

/**
 * How deliveries are signed, with the keys to check them.
 *
 * - `StandardWebhooks`: `webhook-id`, `webhook-timestamp`, `webhook-signature`; body `{ type, timestamp, data }`.
 * - `Stripe`: `Stripe-Signature: t=…,v1=…`; body a Stripe event, `type` → catalog type, `data` → the
 *   type's data, `created` → timestamp, `id` → delivery id.
 * - `GitHub`: `X-Hub-Signature-256: sha256=…`; the event type is `X-GitHub-Event`, the delivery id
 *   `X-GitHub-Delivery`, the data the whole body. GitHub signs no timestamp, so no tolerance applies:
 *   the replay cache (72 h by default) is the only defence against a captured delivery sent again.
 *
 * @category models
 */
export type Scheme =
  | { readonly _tag: "StandardWebhooks"; readonly keys: ReadonlyArray<Signature.VerificationKey> }
  | { readonly _tag: "Stripe"; readonly secrets: ReadonlyArray<Redacted.Redacted<string>> }
  | { readonly _tag: "GitHub"; readonly secrets: ReadonlyArray<Redacted.Redacted<string>> }

const nonEmpty = <A>(what: string, list: ReadonlyArray<A>): ReadonlyArray<A> => {
  if (list.length === 0) throw new Error(`Receiver.${what} needs at least one key`)
  return list
}

const secretList = (
  secrets: Redacted.Redacted<string> | ReadonlyArray<Redacted.Redacted<string>>
): ReadonlyArray<Redacted.Redacted<string>> => (Redacted.isRedacted(secrets) ? [secrets] : secrets)

/**
 * Standard Webhooks, checked with any of `keys` (`v1` secrets and `v1a` public keys; several during
 * a rotation).
 *
 * @category schemes
 */
export const standardWebhooks = (keys: ReadonlyArray<Signature.VerificationKey>): Scheme => ({
  _tag: "StandardWebhooks",
  keys: nonEmpty("standardWebhooks", keys)
})

/**
 * Stripe, checked with the endpoint's `whsec_…` signing secret (or several during a rotation).
 *
 * @category schemes
 */
export const stripe = (
  secrets: Redacted.Redacted<string> | ReadonlyArray<Redacted.Redacted<string>>
): Scheme => ({ _tag: "Stripe", secrets: nonEmpty("stripe", secretList(secrets)) })

/**
 * GitHub, checked with the webhook's secret (or several during a rotation).
 *
 * @category schemes
 */
export const github = (
  secrets: Redacted.Redacted<string> | ReadonlyArray<Redacted.Redacted<string>>
): Scheme => ({ _tag: "GitHub", secrets: nonEmpty("github", secretList(secrets)) })

// ---------------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------------

/**
 * The class an event service extends: a request-scoped service whose value is the decoded event of
 * the catalog (a union narrowed by `type`), so a handler reads it with `yield*` and only compiles
 * behind `Receiver.middleware` for it.
 *
 * @category models
 */
export interface EventServiceClass<
  Self,
  Key extends string,
  E extends Catalog.Events
> extends Middleware.ServiceClass<Self, Key, Catalog.Event<E>> {
  readonly catalog: Catalog.Catalog<E>
}

/**
 * Declares the event service of a receiver for a catalog.
 *
 * @example
 * ```ts
 * class Hook extends Receiver.Event<Hook>()("app/Hook", events) {}
 * const receive = Route.post("/webhooks", Effect.gen(function* () {
 *   const event = yield* Hook
 *   if (event.type === "user.created") yield* welcome(event.data.email)
 *   return HttpServerResponse.empty({ status: 204 })
 * }))
 * Router.group("", [receive]).pipe(Router.use(Receiver.middleware(Hook, { scheme: Receiver.standardWebhooks([secret]) })))
 * ```
 * @category constructors
 */
export const Event =
  <Self>() =>
  <const Key extends string, E extends Catalog.Events>(
    key: Key,
    catalog: Catalog.Catalog<E>
  ): EventServiceClass<Self, Key, E> => {
    const service = Middleware.Service<Self, Catalog.Event<E>>()(key) as any
    service.catalog = catalog
    return service
  }

/**
 * What the receiver learnt about the delivery besides the event: its id (the idempotency key, the
 * same on every retry), the signed time (unix seconds; the receipt time for GitHub), the scheme and
 * the raw body.
 *
 * @category services
 */
export class Delivery extends Middleware.Service<
  Delivery,
  {
    readonly id: string
    readonly timestamp: number
    readonly scheme: Scheme["_tag"]
    readonly body: Uint8Array
  }
>()("@strata/webhooks/Receiver/Delivery") {}

// ---------------------------------------------------------------------------------------------
// Replay cache
// ---------------------------------------------------------------------------------------------

/**
 * What the cache knew of a delivery id when the receiver claimed it: `claimed` (new, now held),
 * `pending` (another request is handling it now) or `done` (handled with a 2xx).
 *
 * @category models
 */
export type ClaimResult = "claimed" | "pending" | "done"

/**
 * The replay cache could not answer. 503, so the sender retries later: without it replays cannot be
 * told apart, and the receiver fails closed.
 *
 * @category errors
 */
export class ReplayCacheUnavailable extends HttpError.Class("ReplayCacheUnavailable", {
  status: 503,
  message: "The webhook could not be checked for replays; retry later"
})<{ readonly cause?: unknown }> {}

/**
 * Where the receiver remembers delivery ids. A delivery is `claimed` before the handler runs; a 2xx
 * answer makes it `done` for `ttl`; any other outcome releases it, so the sender's retry is taken.
 *
 * @category services
 */
export class ReplayCache extends Context.Service<
  ReplayCache,
  {
    readonly claim: (
      key: string,
      ttl: Duration.Duration
    ) => Effect.Effect<ClaimResult, ReplayCacheUnavailable>
    readonly complete: (key: string, ttl: Duration.Duration) => Effect.Effect<void, ReplayCacheUnavailable>
    readonly release: (key: string) => Effect.Effect<void, ReplayCacheUnavailable>
  }
>()("@strata/webhooks/Receiver/ReplayCache") {}

/**
 * An in-memory replay cache for one process, timed by Effect's `Clock`. At `maxEntries` (default
 * 100,000) expired entries are swept, then the oldest dropped: only authentic deliveries reach the
 * cache, so this bounds memory without letting strangers evict entries. Use `ReplayCacheRedis` when
 * several instances receive the same webhooks.
 *
 * @category layers
 */
export const layerMemory = (options?: {
  readonly maxEntries?: number | undefined
}): Layer.Layer<ReplayCache> =>
  Layer.sync(ReplayCache)(() => {
    const maxEntries = options?.maxEntries ?? 100_000
    const entries = new Map<string, { state: "pending" | "done"; expiresAt: number }>()
    const sweep = (now: number) => {
      for (const [key, entry] of entries) if (entry.expiresAt <= now) entries.delete(key)
      while (entries.size >= maxEntries) entries.delete(entries.keys().next().value!)
    }
    return ReplayCache.of({
      claim: (key, ttl) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          const entry = entries.get(key)
          if (entry !== undefined && entry.expiresAt > now) return entry.state
          if (entries.size >= maxEntries) sweep(now)
          entries.delete(key)
          entries.set(key, { state: "pending", expiresAt: now + Duration.toMillis(ttl) })
          return "claimed"
        }),
      complete: (key, ttl) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          entries.set(key, { state: "done", expiresAt: now + Duration.toMillis(ttl) })
        }),
      release: (key) =>
        Effect.sync(() => {
          if (entries.get(key)?.state === "pending") entries.delete(key)
        })
    })
  })

// ---------------------------------------------------------------------------------------------
// Middleware
// ---------------------------------------------------------------------------------------------

/**
 * The delivery id was seen before: already handled with a 2xx, or being handled right now. 401.
 *
 * @category errors
 */
export class Replayed extends HttpError.Class("Replayed", {
  status: 401,
  message: "This webhook delivery was already received"
})<{ readonly id: string }> {}

/**
 * Every way the receiver middleware fails.
 *
 * @category errors
 */
export type Error =
  Body.Error | Signature.VerifyError | Catalog.DecodeError | Replayed | ReplayCacheUnavailable

const raises = [
  "UnsupportedMediaType",
  "PayloadTooLarge",
  "BadRequest",
  "MissingHeader",
  "MalformedHeader",
  "InvalidSignature",
  "TimestampTooOld",
  "TimestampTooNew",
  "UnknownEventType",
  "InvalidPayload",
  "Replayed",
  "ReplayCacheUnavailable"
] as const

/**
 * Options of the receiver middleware.
 *
 * @category models
 */
export interface Options {
  readonly scheme: Scheme
  /** How far the signed timestamp may be from now, either way; default 5 minutes. */
  readonly tolerance?: Duration.Input | undefined
  /**
   * How long a handled delivery id is remembered. Default twice the tolerance (the longest a
   * captured signature stays valid) for Standard Webhooks and Stripe; 72 hours for GitHub, which
   * signs no timestamp. Make it longer to also drop the sender's retries of a delivery whose 2xx
   * was lost.
   */
  readonly replayWindow?: Duration.Input | undefined
  /**
   * What a delivery already handled with a 2xx gets: `"acknowledge"` (default) answers 200 without
   * running the handler, so a sender retrying after a lost response stops instead of retrying until
   * it gives up (and perhaps disables the endpoint); `"reject"` fails with `Replayed` (401). A
   * delivery still being handled is refused either way, so the sender retries it later.
   */
  readonly onDuplicate?: "reject" | "acknowledge" | undefined
  /** The most bytes of body read; default 1 MiB. */
  readonly limit?: ByteSize.Input | undefined
}

// Longer ids are not ids but an attempt to fill the cache.
const maxIdLength = 256

const malformed = (header: string, reason: string) => new Signature.MalformedHeader({ header, reason })

const jsonObject = (bytes: Uint8Array): Record<string, unknown> | undefined => {
  try {
    const value: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes))
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

const notJson = () => new Catalog.InvalidPayload({ reason: "The body is not a JSON object", issues: [] })

interface Verified<E extends Catalog.Events> {
  readonly id: string
  readonly timestamp: number
  readonly event: Catalog.Event<E>
}

const verifyAndDecode = <E extends Catalog.Events>(
  scheme: Scheme,
  catalog: Catalog.Catalog<E>,
  headers: Signature.HeadersInput,
  body: Uint8Array,
  tolerance: Duration.Duration
): Effect.Effect<Verified<E>, Signature.VerifyError | Catalog.DecodeError> =>
  Effect.gen(function* () {
    switch (scheme._tag) {
      case "StandardWebhooks": {
        const { id, timestamp } = yield* Signature.verify(headers, body, scheme.keys, { tolerance })
        const event = yield* Catalog.decode(catalog, body)
        return { id, timestamp, event }
      }
      case "Stripe": {
        const { timestamp } = yield* Signature.verifyStripe(headers, body, scheme.secrets, { tolerance })
        const json = jsonObject(body)
        if (json === undefined) return yield* notJson()
        const id = json["id"]
        const created = json["created"]
        if (typeof id !== "string" || typeof created !== "number" || !Number.isFinite(created))
          return yield* new Catalog.InvalidPayload({
            reason: "The body is not a Stripe event",
            issues: [
              { path: typeof id === "string" ? "created" : "id", message: "Missing or of the wrong type" }
            ]
          })
        const event = yield* Catalog.decodeParts(catalog, {
          type: json["type"],
          timestamp: DateTime.makeUnsafe(created * 1000),
          data: json["data"]
        })
        return { id, timestamp, event }
      }
      case "GitHub": {
        yield* Signature.verifyGithub(headers, body, scheme.secrets)
        const id = yield* Signature.requireHeader(headers, "x-github-delivery")
        const type = yield* Signature.requireHeader(headers, "x-github-event")
        const json = jsonObject(body)
        if (json === undefined) return yield* notJson()
        const now = yield* Clock.currentTimeMillis
        const event = yield* Catalog.decodeParts(catalog, {
          type,
          timestamp: DateTime.makeUnsafe(now),
          data: json
        })
        return { id, timestamp: Math.floor(now / 1000), event }
      }
    }
  })

/**
 * The receiver middleware: reads the raw body, verifies it by `scheme`, decodes the event by the
 * service's catalog and provides it (and `Delivery`) to the route. Needs a `ReplayCache` in the app
 * layer (`Receiver.layerMemory()` or `ReplayCacheRedis.layer…`).
 *
 * @example
 * ```ts
 * const hooks = Router.group("/webhooks", [receive]).pipe(
 *   Router.use(Receiver.middleware(Hook, { scheme: Receiver.standardWebhooks([Signature.secretV1(secret)]) }))
 * )
 * App.toWebHandler(hooks, Receiver.layerMemory())
 * ```
 * @category middleware
 */
export const middleware = <Self, Key extends string, E extends Catalog.Events>(
  service: EventServiceClass<Self, Key, E>,
  options: Options
): Middleware.Middleware<Self | Delivery, never, Error, never, never, ReplayCache> => {
  const tolerance = Duration.fromInputUnsafe(options.tolerance ?? Signature.defaultTolerance)
  const scheme = options.scheme
  const window = Duration.fromInputUnsafe(
    options.replayWindow ?? (scheme._tag === "GitHub" ? Duration.hours(72) : Duration.times(tolerance, 2))
  )
  const limit = options.limit === undefined ? 1024 * 1024 : Number(ByteSize.fromInputUnsafe(options.limit))
  const prefix = scheme._tag === "StandardWebhooks" ? "swh" : scheme._tag === "Stripe" ? "stripe" : "github"
  const key = service as unknown as Middleware.ServiceClass<unknown, string, Catalog.Event<E>>
  // The generic service defeats the compile-time checks of `Middleware.effect` (they run on the
  // concrete types at the call site instead: the declared type below).
  const make = Middleware.effect as (options: unknown) => unknown
  return make({
    name: `webhook receiver (${scheme._tag})`,
    provides: [key, Delivery],
    raises,
    build: Effect.map(
      Effect.service(ReplayCache),
      (cache) => (next: Effect.Effect<any, any, any>) =>
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          const body = yield* Body.bytes({ limit })
          const verified = yield* verifyAndDecode(scheme, service.catalog, request.headers, body, tolerance)
          if (verified.id.length > maxIdLength)
            return yield* malformed("delivery id", "longer than 256 characters")
          const cacheKey = `${prefix}:${verified.id}`
          const claim = yield* cache.claim(cacheKey, window)
          if (claim === "done" && options.onDuplicate !== "reject")
            return HttpServerResponse.jsonUnsafe({ received: true, duplicate: true })
          if (claim !== "claimed") return yield* new Replayed({ id: verified.id })
          return yield* next.pipe(
            Effect.provideService(key, verified.event),
            Effect.provideService(Delivery, {
              id: verified.id,
              timestamp: verified.timestamp,
              scheme: scheme._tag,
              body
            }),
            Effect.onExit((exit) =>
              Exit.isSuccess(exit) && exit.value.status >= 200 && exit.value.status < 300
                ? cache.complete(cacheKey, window)
                : cache.release(cacheKey)
            )
          )
        })
    )
  }) as any
}

// ---------------------------------------------------------------------------------------------
// Handling
// ---------------------------------------------------------------------------------------------

/**
 * The handlers `handle` takes: one per catalog type, each given the event narrowed to its type.
 *
 * @category models
 */
export type Cases<E extends Catalog.Events> = {
  readonly [K in Catalog.Type<E>]?: (
    event: Extract<Catalog.Event<E>, { readonly type: K }>
  ) => Effect.Effect<HttpServerResponse.HttpServerResponse | void, any, any>
}

type CaseEffect<C> = C extends (...args: ReadonlyArray<any>) => infer R ? R : never

/**
 * A route handler that reads the event service and runs the case for its type; a type with no case
 * is acknowledged with 204 (the sender need not retry what this endpoint ignores). A case returning
 * nothing answers 204 too. A case for a type outside the catalog does not compile.
 *
 * @example
 * ```ts
 * Route.post("/webhooks", Receiver.handle(Hook, {
 *   "user.created": (event) => welcome(event.data.email),
 *   "user.deleted": (event) => forget(event.data.id)
 * }))
 * ```
 * @category handlers
 */
export const handle = <Self, Key extends string, E extends Catalog.Events, const C extends Cases<E>>(
  service: EventServiceClass<Self, Key, E>,
  cases: C & { readonly [K in Exclude<keyof C, Catalog.Type<E>>]: never }
): Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  Effect.Error<CaseEffect<C[keyof C]>>,
  Self | Effect.Services<CaseEffect<C[keyof C]>>
> =>
  Effect.flatMap(
    Effect.service(service as unknown as Context.Key<Self, Catalog.Event<E>>),
    (event): Effect.Effect<HttpServerResponse.HttpServerResponse, any, any> => {
      const run = (
        cases as Record<string, ((event: unknown) => Effect.Effect<unknown, any, any>) | undefined>
      )[event.type]
      if (run === undefined) return Effect.succeed(HttpServerResponse.empty({ status: 204 }))
      return Effect.map(run(event), (response) =>
        HttpServerResponse.isHttpServerResponse(response)
          ? response
          : HttpServerResponse.empty({ status: 204 })
      )
    }
  )
