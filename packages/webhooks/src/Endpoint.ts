/**
 * Webhook endpoints: where deliveries go (URL), which event types they take (`user.created`,
 * `user.*`, `*`), the keys that sign them (several during a rotation), whether they are enabled, their
 * own rate limit and concurrency, and free-form metadata.
 *
 * `Endpoints` is the CRUD service; it is provided by the outbox store layers (`OutboxSqlite.layer`,
 * `OutboxPostgres.layer`) and keeps endpoints in the same database as the outbox, so a message's
 * deliveries are chosen from the endpoints in the same transaction.
 *
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Outbox from "./Outbox.ts"
import * as Signature from "./Signature.ts"
import * as Ssrf from "./Ssrf.ts"

// ---------------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------------

/**
 * One signing key of an endpoint. A key with `expiresAt` (epoch ms) stops signing at that time: that
 * is how the previous key of a rotation keeps signing for a while beside the new one.
 *
 * @category models
 */
export interface SigningKey {
  readonly secret: Signature.Secret
  readonly expiresAt: number | null
}

/**
 * Why an endpoint is disabled: it answered 410 (`gone`), it failed without a success for the
 * policy's `disableAfter` (`failing`), or someone disabled it (`manual`).
 *
 * @category models
 */
export type DisabledReason = "gone" | "failing" | "manual"

/**
 * An endpoint as stored.
 *
 * @category models
 */
export interface Endpoint {
  readonly id: string
  readonly url: string
  /** Event type patterns: an exact type, a prefix wildcard `user.*` (any type under `user.`), or `*`. */
  readonly eventTypes: ReadonlyArray<string>
  /** The signing keys, newest first; every unexpired one signs each attempt. */
  readonly keys: ReadonlyArray<SigningKey>
  readonly enabled: boolean
  readonly disabledReason: DisabledReason | null
  /** At most this many attempts start per second (evenly spaced); `null` for no limit. */
  readonly rateLimit: number | null
  /** At most this many attempts are in flight at once, per dispatcher process. */
  readonly concurrency: number
  readonly metadata: Readonly<Record<string, string>>
  readonly createdAt: number
  readonly updatedAt: number
  /** When its current run of failures began (`null` when the last attempt succeeded). */
  readonly failingSince: number | null
  readonly lastSuccessAt: number | null
}

/**
 * What `create` takes. `keys` defaults to one fresh `v1` secret; `eventTypes` to `["*"]`.
 *
 * @category models
 */
export interface Create {
  readonly id?: string | undefined
  readonly url: string
  readonly eventTypes?: ReadonlyArray<string> | undefined
  readonly keys?: ReadonlyArray<Signature.Secret | SigningKey> | undefined
  readonly enabled?: boolean | undefined
  readonly rateLimit?: number | null | undefined
  readonly concurrency?: number | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
}

/**
 * What `update` may change; omitted fields stay. Re-enabling an endpoint clears its failure run.
 *
 * @category models
 */
export interface Update {
  readonly url?: string | undefined
  readonly eventTypes?: ReadonlyArray<string> | undefined
  readonly enabled?: boolean | undefined
  readonly rateLimit?: number | null | undefined
  readonly concurrency?: number | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
}

/**
 * The default number of attempts in flight per endpoint and dispatcher.
 *
 * @category constants
 */
export const defaultConcurrency = 8

// ---------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------

/**
 * No endpoint has this id.
 *
 * @category errors
 */
export class EndpointNotFound extends Data.TaggedError("EndpointNotFound")<{ readonly id: string }> {}

/**
 * The endpoint given to `create` or `update` is not valid; `reason` says which field and why.
 *
 * @category errors
 */
export class InvalidEndpoint extends Data.TaggedError("InvalidEndpoint")<{ readonly reason: string }> {}

/**
 * `create` was given an id that exists.
 *
 * @category errors
 */
export class EndpointExists extends Data.TaggedError("EndpointExists")<{ readonly id: string }> {}

// ---------------------------------------------------------------------------------------------------
// Event type patterns
// ---------------------------------------------------------------------------------------------------

const segment = "[A-Za-z0-9_-]+"
const patternSyntax = new RegExp(`^(?:\\*|${segment}(?:\\.${segment})*(?:\\.\\*)?)$`)

/**
 * Is `pattern` a valid event type pattern (`*`, `a.b`, `a.*`)?
 *
 * @category patterns
 */
export const isPattern = (pattern: string): boolean => pattern.length <= 200 && patternSyntax.test(pattern)

/**
 * Does an event type match one pattern? `*` matches every type; `user.*` matches `user.created` and
 * `user.profile.updated` but not `user` nor `users.created`; anything else matches itself only.
 *
 * @category patterns
 */
export const matchesPattern = (pattern: string, type: string): boolean => {
  if (pattern === "*") return true
  if (pattern.endsWith(".*")) return type.length > pattern.length - 1 && type.startsWith(pattern.slice(0, -1))
  return pattern === type
}

/**
 * Does an endpoint with these patterns take this event type?
 *
 * @category patterns
 */
export const subscribes = (eventTypes: ReadonlyArray<string>, type: string): boolean =>
  eventTypes.some((pattern) => matchesPattern(pattern, type))

// ---------------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------------

/**
 * The keys that sign at `now`: every key without an expiry or expiring later.
 *
 * @category keys
 */
export const activeSecrets = (
  keys: ReadonlyArray<SigningKey>,
  now: number
): ReadonlyArray<Signature.Secret> =>
  keys.flatMap((key) => (key.expiresAt === null || key.expiresAt > now ? [key.secret] : []))

/** @internal The JSON form of keys in a store (the secret text; v1a public keys are derived again). */
export const encodeKeys = (keys: ReadonlyArray<SigningKey>): string =>
  JSON.stringify(
    keys.map((key) =>
      key.secret.version === "v1"
        ? { v1: Redacted.value(key.secret.key), expiresAt: key.expiresAt }
        : { v1a: Redacted.value(key.secret.privateKey), expiresAt: key.expiresAt }
    )
  )

/** @internal Reads keys written by `encodeKeys`; throws on anything else. */
export const decodeKeys = (text: string): ReadonlyArray<SigningKey> => {
  const parsed: unknown = JSON.parse(text)
  if (!Array.isArray(parsed)) throw new Error("endpoint keys are not an array")
  return parsed.map((entry: unknown): SigningKey => {
    if (typeof entry !== "object" || entry === null) throw new Error("an endpoint key is not an object")
    const { expiresAt, v1, v1a } = entry as { v1?: unknown; v1a?: unknown; expiresAt?: unknown }
    const expiry = typeof expiresAt === "number" ? expiresAt : null
    if (typeof v1 === "string") return { secret: Signature.secretV1(v1), expiresAt: expiry }
    if (typeof v1a === "string") return { secret: Signature.secretV1a(v1a), expiresAt: expiry }
    throw new Error("an endpoint key has neither v1 nor v1a")
  })
}

const isSigningKey = (key: Signature.Secret | SigningKey): key is SigningKey => "secret" in key

// ---------------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------------

const idSyntax = /^[A-Za-z0-9_-]{1,64}$/

/**
 * @internal A new id with a type prefix (`ep_…`, `msg_…`): the creation time (milliseconds, 9 base-36
 * digits, so ids sort by time) and 16 random characters (96 bits). Time-ordered ids keep the stores'
 * B-trees appending instead of splitting pages all over, which is much of the cost of a busy outbox.
 */
export const makeId = (prefix: string): string =>
  `${prefix}_${Date.now().toString(36).padStart(9, "0")}${randomBytes(12).toString("base64url")}`

const invalid = (reason: string) => Effect.fail(new InvalidEndpoint({ reason }))

/**
 * Options of the `Endpoints` service, taken by the store layers too.
 *
 * @category models
 */
export interface Options {
  /**
   * Blocked addresses an endpoint URL may point at anyway, in the format of
   * `Ssrf.layerHttpClient({ allow })` (CIDRs or single addresses): give both the same list. Without
   * it, `create` and `update` refuse a URL whose host is a blocked IP literal (loopback, private,
   * link-local, …, in any spelling) or `localhost` / `*.localhost`; `localhost` passes when the list
   * allows 127.0.0.1 or ::1. Names that need DNS are not resolved here: the dispatcher's guard checks
   * the address it dials.
   */
  readonly allowEndpoints?: Ssrf.Options["allow"]
}

const allowHint =
  "allow it with the store's `allowEndpoints`, and the dispatcher's `Ssrf.layerHttpClient({ allow })`"

const isLocalhost = (hostname: string): boolean => {
  const name = hostname.endsWith(".") ? hostname.slice(0, -1) : hostname
  return name === "localhost" || name.endsWith(".localhost")
}

/**
 * Refuses a host the SSRF guard would refuse without asking DNS: blocked IP literals (the URL parser
 * has already normalised `2130706433`, `0x7f.1` and the like to dotted form) and the `localhost`
 * names, which every resolver answers with loopback.
 */
const checkHost = (
  parsed: URL,
  check: (ip: string) => Ssrf.Classification
): Effect.Effect<void, InvalidEndpoint> => {
  const host = parsed.hostname
  const address = Ssrf.parse(host)
  if (address !== undefined) {
    const verdict = check(host)
    return verdict.blocked
      ? invalid(`url: ${Ssrf.format(address)} is a blocked address (${verdict.reason}); ${allowHint}`)
      : Effect.void
  }
  if (isLocalhost(host) && check("127.0.0.1").blocked && check("::1").blocked)
    return invalid(`url: ${host} is a blocked name (loopback: 127.0.0.1, ::1); ${allowHint}`)
  return Effect.void
}

const checkUrl = (url: string): Effect.Effect<URL, InvalidEndpoint> => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return invalid("url: not an absolute URL")
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:")
    return invalid("url: must be http or https")
  if (parsed.username !== "" || parsed.password !== "") return invalid("url: must not carry credentials")
  if (parsed.hash !== "") return invalid("url: must not have a fragment")
  return Effect.succeed(parsed)
}

const checkFields = (fields: Update): Effect.Effect<void, InvalidEndpoint> => {
  if (fields.eventTypes !== undefined) {
    if (fields.eventTypes.length === 0) return invalid("eventTypes: give at least one pattern (`*` for all)")
    const bad = fields.eventTypes.find((pattern) => !isPattern(pattern))
    if (bad !== undefined) return invalid(`eventTypes: ${JSON.stringify(bad.slice(0, 100))} is not a pattern`)
  }
  if (fields.rateLimit !== undefined && fields.rateLimit !== null) {
    if (!(Number.isFinite(fields.rateLimit) && fields.rateLimit > 0))
      return invalid("rateLimit: must be a positive number of attempts per second, or null")
  }
  if (fields.concurrency !== undefined) {
    if (!(Number.isInteger(fields.concurrency) && fields.concurrency >= 1 && fields.concurrency <= 1024))
      return invalid("concurrency: must be an integer from 1 to 1024")
  }
  if (fields.metadata !== undefined) {
    if (Object.values(fields.metadata).some((value) => typeof value !== "string"))
      return invalid("metadata: values must be strings")
  }
  return Effect.void
}

// ---------------------------------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------------------------------

/**
 * Endpoint CRUD. Writes change what the dispatchers see within one poll: they reload endpoints when
 * the store's endpoint revision moves.
 *
 * @category services
 */
export class Endpoints extends Context.Service<
  Endpoints,
  {
    readonly create: (
      input: Create
    ) => Effect.Effect<Endpoint, InvalidEndpoint | EndpointExists | Outbox.StoreError>
    readonly get: (id: string) => Effect.Effect<Endpoint, EndpointNotFound | Outbox.StoreError>
    readonly list: Effect.Effect<ReadonlyArray<Endpoint>, Outbox.StoreError>
    readonly update: (
      id: string,
      update: Update
    ) => Effect.Effect<Endpoint, EndpointNotFound | InvalidEndpoint | Outbox.StoreError>
    /** Deletes the endpoint with its deliveries and their attempts. */
    readonly remove: (id: string) => Effect.Effect<void, EndpointNotFound | Outbox.StoreError>
    /**
     * Adds a new key (a fresh `v1` secret unless given) in front; the keys that were signing keep
     * signing for `overlap` (default 24 h) so receivers can switch over, then stop.
     */
    readonly rotate: (
      id: string,
      options?: {
        readonly secret?: Signature.Secret | undefined
        readonly overlap?: Duration.Input | undefined
      }
    ) => Effect.Effect<Endpoint, EndpointNotFound | Outbox.StoreError>
  }
>()("@strata/webhooks/Endpoint/Endpoints") {}

/**
 * The `Endpoints` service over an outbox store: validation (the URL's host included, see
 * `Options.allowEndpoints`), ids and key defaults here, storage in the store. The store layers
 * provide it already, passing their `allowEndpoints` on; use this one with a store of your own.
 *
 * @example
 * ```ts
 * // a self-hosted receiver on the private network, allowed here and where it is dialled
 * const allow = ["10.20.0.0/16"]
 * const Endpoints = Endpoint.layer({ allowEndpoints: allow }).pipe(Layer.provide(MyStore))
 * const Client = Ssrf.layerHttpClient({ allow })
 * ```
 * @category layers
 */
export const layer = (settings: Options = {}): Layer.Layer<Endpoints, never, Outbox.Store> =>
  Layer.effect(Endpoints)(
    Effect.gen(function* () {
      const store = yield* Outbox.Store
      const check = Ssrf.makeCheck({ allow: settings.allowEndpoints })
      const checkEndpointUrl = (url: string) =>
        Effect.flatMap(checkUrl(url), (parsed) => Effect.as(checkHost(parsed, check), parsed.href))
      const get = (id: string) =>
        Effect.flatMap(store.endpoints.get(id), (found) =>
          Option.isSome(found) ? Effect.succeed(found.value) : Effect.fail(new EndpointNotFound({ id }))
        )
      const modify = (id: string, f: (endpoint: Endpoint, now: number) => Endpoint) =>
        Effect.flatMap(store.endpoints.update(id, f), (updated) =>
          Option.isSome(updated) ? Effect.succeed(updated.value) : Effect.fail(new EndpointNotFound({ id }))
        )
      return Endpoints.of({
        create: (input) =>
          Effect.gen(function* () {
            const url = yield* checkEndpointUrl(input.url)
            yield* checkFields(input)
            if (input.id !== undefined && !idSyntax.test(input.id))
              return yield* invalid("id: 1 to 64 letters, digits, `_` or `-`")
            const now = yield* Clock.currentTimeMillis
            const endpoint: Endpoint = {
              id: input.id ?? makeId("ep"),
              url,
              eventTypes: input.eventTypes ?? ["*"],
              keys: (input.keys ?? [Signature.generateV1()]).map((key) =>
                isSigningKey(key) ? key : { secret: key, expiresAt: null }
              ),
              enabled: input.enabled ?? true,
              disabledReason: input.enabled === false ? "manual" : null,
              rateLimit: input.rateLimit ?? null,
              concurrency: input.concurrency ?? defaultConcurrency,
              metadata: { ...input.metadata },
              createdAt: now,
              updatedAt: now,
              failingSince: null,
              lastSuccessAt: null
            }
            if (endpoint.keys.length === 0) return yield* invalid("keys: give at least one signing key")
            const inserted = yield* store.endpoints.insert(endpoint)
            if (!inserted) return yield* new EndpointExists({ id: endpoint.id })
            return endpoint
          }),
        get,
        list: store.endpoints.list,
        update: (id, update) =>
          Effect.gen(function* () {
            const url = update.url === undefined ? undefined : yield* checkEndpointUrl(update.url)
            yield* checkFields(update)
            return yield* modify(id, (endpoint, now) => {
              const enabling = update.enabled === true && !endpoint.enabled
              const enabled = update.enabled ?? endpoint.enabled
              return {
                ...endpoint,
                url: url ?? endpoint.url,
                eventTypes: update.eventTypes ?? endpoint.eventTypes,
                enabled,
                disabledReason: enabled
                  ? null
                  : update.enabled === false
                    ? "manual"
                    : endpoint.disabledReason,
                rateLimit: update.rateLimit === undefined ? endpoint.rateLimit : update.rateLimit,
                concurrency: update.concurrency ?? endpoint.concurrency,
                metadata: update.metadata ?? endpoint.metadata,
                updatedAt: now,
                // Re-enabled after a run of failures: the run starts over, or it would be disabled again
                // on its first failure.
                failingSince: enabling ? null : endpoint.failingSince
              }
            })
          }),
        remove: (id) =>
          Effect.flatMap(store.endpoints.remove(id), (removed) =>
            removed ? Effect.void : Effect.fail(new EndpointNotFound({ id }))
          ),
        rotate: (id, options) =>
          modify(id, (endpoint, now) => {
            const until = now + Duration.toMillis(options?.overlap ?? "24 hours")
            return {
              ...endpoint,
              keys: [
                { secret: options?.secret ?? Signature.generateV1(), expiresAt: null },
                ...endpoint.keys
                  .filter((key) => key.expiresAt === null || key.expiresAt > now)
                  .map((key) => ({ secret: key.secret, expiresAt: Math.min(key.expiresAt ?? until, until) }))
              ],
              updatedAt: now
            }
          })
      })
    })
  )
