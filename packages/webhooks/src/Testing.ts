/**
 * Testing webhooks on both sides: a fake receiver with scripted answers and a harness that drives the
 * real dispatcher and an in-memory store through simulated time (sending), and delivery laws to run
 * against your own receiver handler (receiving). Imported by path (`@strata/webhooks/Testing`)
 * because it needs the optional `fast-check` peer and Node's `node:sqlite`.
 *
 * Everything here is a real component except the far end of the wire: the harness runs the real
 * `Dispatcher` on the real `OutboxSqlite` store (in memory), and only the HTTP client is fake, so time
 * moves when the test moves `TestClock` and no socket is opened.
 *
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import { isDeepStrictEqual, inspect } from "node:util"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientError from "effect/http/HttpClientError"
import * as HttpClientResponse from "effect/http/HttpClientResponse"
import * as TestClock from "effect/testing/TestClock"
import * as fc from "fast-check"
import * as Arbitraries from "@strata/core/Arbitraries"
import type * as Property from "@strata/core/Property"
import * as Catalog from "./Catalog.ts"
import * as Dispatcher from "./Dispatcher.ts"
import * as Endpoint from "./Endpoint.ts"
import * as Outbox from "./Outbox.ts"
import * as OutboxSqlite from "./OutboxSqlite.ts"
import type * as Retry from "./Retry.ts"
import * as Signature from "./Signature.ts"

// ---------------------------------------------------------------------------------------------------
// The fake receiver
// ---------------------------------------------------------------------------------------------------

/**
 * A response: `status` after `delay` (on the Effect clock, so `TestClock` drives it), with
 * `headers` and `body`. `retryAfter` sets the `Retry-After` header (seconds, or an HTTP date);
 * `cut` sends the status and the first half of the body, then drops the connection.
 *
 * @category models
 */
export interface Respond {
  readonly status: number
  readonly delay?: Duration.Input | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly body?: string | undefined
  readonly retryAfter?: number | string | undefined
  readonly cut?: boolean | undefined
}

/**
 * What the fake receiver answers one request with: a status (a number is `{ status }`), a
 * `Respond`, or a hang-up — `"hang"` never answers (the dispatcher's timeout ends it), `"refuse"` is a
 * refused connection, `"reset"` a connection dropped after the request was sent.
 *
 * @category models
 */
export type Answer = number | Respond | "hang" | "refuse" | "reset"

/**
 * One request as the fake receiver saw it.
 *
 * @category models
 */
export interface Received {
  readonly method: string
  readonly url: string
  readonly host: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  /** How many requests to this host came before it. */
  readonly index: number
  /** How many requests to this host with the same `webhook-id` came before it (0 on a first attempt). */
  readonly attempt: number
  /** When it arrived (Effect clock, epoch ms). */
  readonly at: number
  /** When the answer ended it (Effect clock); `undefined` while in flight, or when it hung. */
  endedAt: number | undefined
  /** What the script answered. */
  answer: Answer | undefined
}

/**
 * How the fake receiver answers: one answer for every request, a sequence (the n-th request to a
 * host gets the n-th answer, the last one repeats), or a function of the request and its index
 * among the requests to its host.
 *
 * @category models
 */
export type Script = Answer | ReadonlyArray<Answer> | ((request: Received, index: number) => Answer)

/**
 * A sequence per host: the n-th request to a host gets the n-th answer, then the last one repeats.
 * (A plain array is the same script.)
 *
 * @example
 * ```ts
 * Testing.receiver(Testing.answers([503, { status: 503, retryAfter: 30 }, 200]))
 * ```
 * @category scripts
 */
export const answers =
  (sequence: ReadonlyArray<Answer>) =>
  (_request: Received, index: number): Answer => {
    if (sequence.length === 0) throw new Error("Testing.answers needs at least one answer")
    return sequence[Math.min(index, sequence.length - 1)]!
  }

/**
 * A sequence per host that starts over when it ends.
 *
 * @category scripts
 */
export const cycle =
  (sequence: ReadonlyArray<Answer>) =>
  (_request: Received, index: number): Answer => {
    if (sequence.length === 0) throw new Error("Testing.cycle needs at least one answer")
    return sequence[index % sequence.length]!
  }

/**
 * A sequence per message: the n-th attempt of each `webhook-id` at a host gets the n-th answer
 * (the last one repeats), so "every message fails twice, then succeeds" is `perMessage([500, 500, 200])`.
 *
 * @category scripts
 */
export const perMessage =
  (sequence: ReadonlyArray<Answer>) =>
  (request: Received): Answer => {
    if (sequence.length === 0) throw new Error("Testing.perMessage needs at least one answer")
    return sequence[Math.min(request.attempt, sequence.length - 1)]!
  }

/**
 * A script per host; hosts not listed get `otherwise` (default 200).
 *
 * @example
 * ```ts
 * Testing.receiver(Testing.byHost({ "down.test": "refuse", "slow.test": { status: 200, delay: "4 seconds" } }))
 * ```
 * @category scripts
 */
export const byHost =
  (scripts: Readonly<Record<string, Script>>, otherwise: Script = 200) =>
  (request: Received, index: number): Answer =>
    answerOf(Object.hasOwn(scripts, request.host) ? scripts[request.host]! : otherwise, request, index)

const answerOf = (script: Script, request: Received, index: number): Answer =>
  typeof script === "function"
    ? script(request, index)
    : Array.isArray(script)
      ? answers(script)(request, index)
      : (script as Answer)

/**
 * A fake receiver: the `HttpClient` the dispatcher posts through, and what it recorded.
 *
 * @category models
 */
export interface FakeReceiver {
  /** Every request, in arrival order. */
  readonly received: ReadonlyArray<Received>
  /** Requests in flight right now, per host. */
  readonly inFlight: ReadonlyMap<string, number>
  /** The most requests ever in flight at once, per host. */
  readonly maxInFlight: ReadonlyMap<string, number>
  /** The requests to a host, or of a `webhook-id`, or both. */
  readonly requests: (filter?: {
    readonly host?: string | undefined
    readonly webhookId?: string | undefined
  }) => ReadonlyArray<Received>
  /**
   * The requests (of the filter) whose Standard Webhooks signature does not check with any of
   * `keys` at the time they arrived: empty when every one was signed right.
   */
  readonly unverified: (
    keys: ReadonlyArray<Signature.VerificationKey>,
    filter?: { readonly host?: string | undefined; readonly webhookId?: string | undefined }
  ) => Effect.Effect<ReadonlyArray<Received>>
  readonly client: HttpClient.HttpClient
  /** Provides the `HttpClient` and `Fake` (this receiver). */
  readonly layer: Layer.Layer<HttpClient.HttpClient | Fake>
}

/**
 * The fake receiver of the current world (`Testing.layer`), to read what it received.
 *
 * @category services
 */
export class Fake extends Context.Service<Fake, FakeReceiver>()("@strata/webhooks/Testing/Fake") {}

const nullBodyStatuses = new Set([101, 204, 205, 304])

const responseOf = (reply: Respond): Response => {
  const headers = new Headers(reply.headers ?? {})
  if (reply.retryAfter !== undefined) headers.set("retry-after", String(reply.retryAfter))
  if (nullBodyStatuses.has(reply.status)) return new Response(null, { status: reply.status, headers })
  const text = reply.body ?? ""
  if (reply.cut !== true) return new Response(text, { status: reply.status, headers })
  const bytes = new TextEncoder().encode(text)
  // The first read gets half of the body, the next one the error (an error raised with the chunk
  // still queued would discard it).
  let sent = false
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent) return controller.error(new Error("read ECONNRESET"))
      sent = true
      controller.enqueue(bytes.slice(0, Math.floor(bytes.length / 2)))
    }
  })
  return new Response(stream, { status: reply.status, headers })
}

/**
 * Verifies one received request's Standard Webhooks signature with `keys`, at the time it arrived.
 *
 * @category assertions
 */
export const verifyReceived = (
  request: Received,
  keys: ReadonlyArray<Signature.VerificationKey>,
  options?: { readonly tolerance?: Duration.Input | undefined }
): Effect.Effect<Signature.Verified, Signature.VerifyError> =>
  Signature.verify(request.headers, request.body, keys, {
    now: new Date(request.at),
    ...(options?.tolerance === undefined ? {} : { tolerance: options.tolerance })
  })

/**
 * Makes a fake receiver answering by `script` (default: 200 to everything). It records each request
 * (headers, body, arrival and end on the Effect clock) and how many were in flight per host.
 *
 * @example
 * ```ts
 * const fake = Testing.receiver(Testing.byHost({ "a.test": [503, 503, 200] }))
 * const layer = Dispatcher.layer().pipe(Layer.provideMerge(Testing.store), Layer.provide(fake.layer))
 * ```
 * @category constructors
 */
export const receiver = (script: Script = 200): FakeReceiver => {
  const received: Array<Received> = []
  const perHost = new Map<string, number>()
  const perMessageAttempts = new Map<string, number>()
  const inFlight = new Map<string, number>()
  const maxInFlight = new Map<string, number>()
  const requests = (filter?: {
    readonly host?: string | undefined
    readonly webhookId?: string | undefined
  }) =>
    received.filter(
      (r) =>
        (filter?.host === undefined || r.host === filter.host) &&
        (filter?.webhookId === undefined || r.headers["webhook-id"] === filter.webhookId)
    )
  const client = HttpClient.make((request, url) =>
    Effect.gen(function* () {
      const at = yield* Clock.currentTimeMillis
      const body = request.body._tag === "Uint8Array" ? new TextDecoder().decode(request.body.body) : ""
      const index = perHost.get(url.host) ?? 0
      perHost.set(url.host, index + 1)
      const messageKey = `${url.host}\u0000${request.headers["webhook-id"] ?? ""}`
      const attempt = perMessageAttempts.get(messageKey) ?? 0
      perMessageAttempts.set(messageKey, attempt + 1)
      const seen: Received = {
        method: request.method,
        url: url.href,
        host: url.host,
        headers: request.headers,
        body,
        index,
        attempt,
        at,
        endedAt: undefined,
        answer: undefined
      }
      received.push(seen)
      const now = (inFlight.get(url.host) ?? 0) + 1
      inFlight.set(url.host, now)
      maxInFlight.set(url.host, Math.max(now, maxInFlight.get(url.host) ?? 0))
      const reply = answerOf(script, seen, index)
      seen.answer = reply
      return yield* Effect.gen(function* () {
        if (reply === "hang") return yield* Effect.never
        if (reply === "refuse" || reply === "reset") {
          seen.endedAt = yield* Clock.currentTimeMillis
          return yield* new HttpClientError.HttpClientError({
            reason: new HttpClientError.TransportError({
              request,
              description: reply === "refuse" ? "connect ECONNREFUSED" : "socket hang up (ECONNRESET)"
            })
          })
        }
        const respond: Respond = typeof reply === "number" ? { status: reply } : reply
        if (respond.delay !== undefined) {
          const delay = Duration.fromInputUnsafe(respond.delay)
          if (Duration.toMillis(delay) > 0) yield* Effect.sleep(delay)
        }
        seen.endedAt = yield* Clock.currentTimeMillis
        return HttpClientResponse.fromWeb(request, responseOf(respond))
      }).pipe(Effect.ensuring(Effect.sync(() => inFlight.set(url.host, (inFlight.get(url.host) ?? 1) - 1))))
    })
  )
  const fake: FakeReceiver = {
    received,
    inFlight,
    maxInFlight,
    requests,
    unverified: (keys, filter) =>
      Effect.filter(requests(filter), (request) =>
        Effect.map(Effect.exit(verifyReceived(request, keys)), Exit.isFailure)
      ),
    client,
    layer: Layer.merge(
      Layer.succeed(HttpClient.HttpClient, client),
      Layer.sync(Fake)(() => fake)
    )
  }
  return fake
}

// ---------------------------------------------------------------------------------------------------
// The world: store, endpoints, dispatcher, fake receiver
// ---------------------------------------------------------------------------------------------------

/**
 * The outbox store of tests: the real `OutboxSqlite` store on an in-memory database (Node's
 * `node:sqlite`), so tests exercise the same SQL, leases and fencing as production, and each build
 * of the layer starts empty. It provides `Endpoint.Endpoints` too.
 *
 * @category layers
 */
export const store: Layer.Layer<Outbox.Store | Endpoint.Endpoints, Outbox.StoreError> = OutboxSqlite.layer({
  filename: ":memory:"
})

/**
 * What a world provides besides the fake receiver.
 *
 * @category models
 */
export type Services = Outbox.Store | Endpoint.Endpoints | Dispatcher.Dispatcher

/**
 * Options of `layer` and `world`.
 *
 * @category models
 */
export interface WorldOptions<SE = Outbox.StoreError> {
  /** How the fake receiver answers; default 200 to everything. */
  readonly receiver?: Script | undefined
  /** The retry policy (overrides `dispatcher.policy`); default `Retry.defaultPolicy`. */
  readonly policy?: Retry.Policy | undefined
  /**
   * The dispatcher's options. `pollInterval` defaults to 1 minute here: sends wake the dispatcher
   * and it sleeps until the next retry is due, so a short poll would only add steps to the clock.
   */
  readonly dispatcher?: Dispatcher.Options | undefined
  /** The store; default `Testing.store` (SQLite in memory). */
  readonly store?: Layer.Layer<Outbox.Store | Endpoint.Endpoints, SE> | undefined
  /** Endpoints created when the world starts. */
  readonly endpoints?: ReadonlyArray<Endpoint.Create> | undefined
}

/**
 * How building a world fails: the store, or creating one of its `endpoints`.
 *
 * @category errors
 */
export type SetupError = Endpoint.InvalidEndpoint | Endpoint.EndpointExists | Outbox.StoreError

/**
 * A world as a layer: the store, the real dispatcher posting to a fake receiver (`Fake`), and the
 * endpoints to create. Each build is a fresh world, so it fits `Property.effect`'s `layer` option
 * (each case under a fresh `TestClock`) and `it.effect`.
 *
 * @example
 * ```ts
 * it("retries a 503 and delivers", () =>
 *   Property.effect([fc.integer({ min: 0, max: 3 })], ([failures]) =>
 *     Effect.gen(function* () {
 *       const sent = yield* Outbox.sendEncoded({ eventType: "t.x", payload: "{}" })
 *       expect(yield* Testing.untilQuiet("1 hour")).toBe(true)
 *       expect((yield* Testing.Fake).requests({ webhookId: sent.id }).length).toBeGreaterThan(0)
 *     }), { layer: Testing.layer({ endpoints: [{ url: "http://a.test/hook" }] }) }))
 * ```
 * @category layers
 */
export const layer = <SE = Outbox.StoreError>(
  options: WorldOptions<SE> = {}
): Layer.Layer<Services | Fake, SE | SetupError> =>
  Layer.unwrap(Effect.sync(() => worldLayer(options, receiver(options.receiver ?? 200))))

const worldLayer = <SE>(
  options: WorldOptions<SE>,
  fake: FakeReceiver
): Layer.Layer<Services | Fake, SE | SetupError> => {
  const stores = options.store ?? (store as unknown as Layer.Layer<Outbox.Store | Endpoint.Endpoints, SE>)
  const created = Layer.effectDiscard(
    Effect.flatMap(Effect.service(Endpoint.Endpoints), (endpoints) =>
      Effect.forEach(options.endpoints ?? [], (create) => endpoints.create(create), { discard: true })
    )
  )
  const dispatcher = Dispatcher.layer({
    pollInterval: "1 minute",
    ...options.dispatcher,
    ...(options.policy === undefined ? {} : { policy: options.policy })
  })
  return Layer.mergeAll(dispatcher, created).pipe(Layer.provideMerge(stores), Layer.provideMerge(fake.layer))
}

/**
 * Runs `body` in a fresh world (see `layer`), giving it the fake receiver. Needs a `TestClock`
 * (`Property.effect`, `it.effect`) to move time with `advance` and `untilQuiet`.
 *
 * @example
 * ```ts
 * Testing.world({ receiver: [503, 200], policy }, (fake) =>
 *   Effect.gen(function* () {
 *     yield* (yield* Endpoint.Endpoints).create({ url: "http://a.test/hook" })
 *     yield* Outbox.sendEncoded({ eventType: "t.x", payload: "{}" })
 *     expect(yield* Testing.untilQuiet("1 hour")).toBe(true)
 *     expect(fake.received.length).toBe(2)
 *   }))
 * ```
 * @category constructors
 */
export const world = <A, E, SE = Outbox.StoreError>(
  options: WorldOptions<SE>,
  body: (receiver: FakeReceiver) => Effect.Effect<A, E, Services | Fake>
): Effect.Effect<A, E | SE | SetupError> =>
  Effect.suspend(() => {
    const fake = receiver(options.receiver ?? 200)
    return Effect.provide(body(fake), worldLayer(options, fake))
  })

/**
 * Lets forked fibers (the dispatcher's) run as far as they can without moving the clock.
 *
 * @category time
 */
export const settle: Effect.Effect<void> = Effect.gen(function* () {
  for (let i = 0; i < 8; i++) yield* Effect.yieldNow
})

/**
 * Moves the `TestClock` forward by `duration` in steps of `step` (default 1 second), letting the
 * dispatcher run after each, so what falls due inside the span happens at its time.
 *
 * @category time
 */
export const advance = (duration: Duration.Input, step: Duration.Input = "1 second"): Effect.Effect<void> =>
  Effect.gen(function* () {
    const total = Duration.toMillis(Duration.fromInputUnsafe(duration))
    const stride = Math.max(1, Duration.toMillis(Duration.fromInputUnsafe(step)))
    for (let done = 0; done < total; done += stride) {
      yield* TestClock.adjust(Math.min(stride, total - done))
      yield* settle
    }
  })

/**
 * Moves the `TestClock` in steps of `step` until no delivery is pending, for at most `max`; true when
 * everything ended (delivered, failed or disabled).
 *
 * @category time
 */
export const untilQuiet = (
  max: Duration.Input = "1 hour",
  step: Duration.Input = "1 second"
): Effect.Effect<boolean, Outbox.StoreError, Outbox.Store> =>
  Effect.gen(function* () {
    const total = Duration.toMillis(Duration.fromInputUnsafe(max))
    const stride = Math.max(1, Duration.toMillis(Duration.fromInputUnsafe(step)))
    yield* settle
    for (let done = 0; done < total; done += stride) {
      const pending = yield* Outbox.deliveries({ state: "pending", limit: 1 })
      if (pending.length === 0) return true
      yield* TestClock.adjust(stride)
      yield* settle
    }
    return (yield* Outbox.deliveries({ state: "pending", limit: 1 })).length === 0
  })

/**
 * A delivery with its attempts, in order.
 *
 * @category models
 */
export interface DeliveryWithAttempts {
  readonly delivery: Outbox.Delivery
  readonly attempts: ReadonlyArray<Outbox.Attempt>
}

/**
 * The deliveries matching `query` (default: all, up to 1000), each with its attempts.
 *
 * @category getters
 */
export const deliveries = (
  query: Outbox.DeliveryQuery = {}
): Effect.Effect<ReadonlyArray<DeliveryWithAttempts>, Outbox.StoreError, Outbox.Store> =>
  Effect.flatMap(Outbox.deliveries({ limit: 1000, ...query }), (found) =>
    Effect.forEach(found, (delivery) =>
      Effect.map(Outbox.attempts(delivery), (attempts) => ({ delivery, attempts }))
    )
  )

// ---------------------------------------------------------------------------------------------------
// Delivery laws
// ---------------------------------------------------------------------------------------------------

/**
 * An event the laws deliver: a catalog type with its data, and the event's own time (the envelope's
 * `timestamp`; generated when absent).
 *
 * @category models
 */
export type Input<E extends Catalog.Events> = {
  readonly [K in Catalog.Type<E>]: {
    readonly type: K
    readonly data: Catalog.Data<E, K>
    readonly timestamp?: Date | undefined
  }
}[Catalog.Type<E>]

// Event times are drawn from one minute after a fixed instant: reproducible from the seed, and close
// enough that two events of a case often share a second.
const baseTime = Date.UTC(2030, 0, 1)

const survivesTheWire = (catalog: Catalog.Any, type: string, data: unknown): boolean => {
  try {
    const body = Catalog.encode(catalog, type, data, { timestamp: new Date(baseTime) })
    return Exit.isSuccess(Effect.runSyncExit(Catalog.decode(catalog, body)))
  } catch {
    return false
  }
}

/**
 * An arbitrary of the catalog's events: a type, then data generated from its Schema
 * (`@strata/core/Arbitraries`), kept only when it survives the wire (encoded, sent as JSON and
 * decoded again). The laws' default; narrow it (`.filter`) or write your own to aim at cases that
 * matter, such as several events about the same entity.
 *
 * @category constructors
 */
export const events = <E extends Catalog.Events>(
  catalog: Catalog.Catalog<E>,
  options?: Arbitraries.Options
): fc.Arbitrary<Input<E>> => {
  const perType = catalog.types.map((type) =>
    Arbitraries.arbitrary(catalog.events[type]!, options)
      .filter((data) => survivesTheWire(catalog as Catalog.Any, type, data))
      .map((data) => ({ type, data }) as Input<E>)
  )
  if (perType.length === 0) throw new Error("Testing.events: the catalog has no event types")
  return perType.length === 1 ? perType[0]! : fc.oneof(...perType)
}

/**
 * A way the laws spoil a delivery. Each is refused by a receiver that verifies: `Unsigned` (no
 * signature header), `NoHeaders` (none of the scheme's headers), `WrongKey` (signed with a key the
 * receiver does not hold), `BodyByte` / `SignatureByte` (one byte of the body or of every signature
 * entry changed), `IdChar` (one character of the delivery id changed), `TimestampShift` (the signed
 * timestamp moved by `by` seconds, still within the tolerance, after signing), `Stale` / `Future`
 * (correctly signed, `by` seconds beyond the tolerance).
 *
 * Per scheme (`LawsOptions.scheme`):
 * - Standard Webhooks: all of them, on `webhook-id`, `webhook-timestamp` and `webhook-signature`.
 * - Stripe: all but `NoHeaders` (`Stripe-Signature` is its only header, so it is `Unsigned`). The
 *   delivery id is the body's `id`, so `IdChar` changes it in the signed body; `TimestampShift`,
 *   `Stale` and `Future` act on the header's `t`.
 * - GitHub: `Unsigned`, `NoHeaders` (no `X-Hub-Signature-256`, `X-GitHub-Event` or
 *   `X-GitHub-Delivery`), `WrongKey`, `BodyByte` and `SignatureByte`. GitHub signs no timestamp, so
 *   `TimestampShift`, `Stale` and `Future` do not exist for it. Nor does it sign `X-GitHub-Delivery`
 *   or `X-GitHub-Event`: a delivery whose id (or event header) was changed still carries a valid
 *   signature, and is to the receiver a new delivery of the same body. No verifying receiver can
 *   refuse it, so `IdChar` is not tried: the replay cache is keyed by that id, and only idempotence
 *   by the body's own content (an id inside the payload) stops a captured delivery sent again under
 *   another id.
 *
 * @category models
 */
export type Tamper =
  | { readonly _tag: "Unsigned" }
  | { readonly _tag: "NoHeaders" }
  | { readonly _tag: "WrongKey" }
  | { readonly _tag: "BodyByte"; readonly at: number; readonly xor: number }
  | { readonly _tag: "SignatureByte"; readonly at: number; readonly xor: number }
  | { readonly _tag: "IdChar"; readonly at: number; readonly char: string }
  | { readonly _tag: "TimestampShift"; readonly by: number }
  | { readonly _tag: "Stale"; readonly by: number }
  | { readonly _tag: "Future"; readonly by: number }

/**
 * The receiver the laws test, made afresh for each case: its web handler (`App.toWebHandler(app,
 * layer).handler`, a `fetch`-style function), `observe`, which reads its state as plain data
 * compared by deep equality, and `dispose`.
 *
 * `observe` decides what "the same effect" means: return what your receiver did (rows written,
 * calls made), and leave out what legitimately differs between runs — arrival times, the order of an
 * append-only log (sort it), generated ids.
 *
 * @category models
 */
export interface Subject {
  readonly handler: (request: Request) => Promise<Response>
  readonly observe: () => unknown
  readonly dispose?: (() => unknown) | undefined
}

/**
 * Options of `laws`: the common ones (`LawsBaseOptions`) and how the deliveries are signed
 * (`LawsSigning`).
 *
 * @category models
 */
export type LawsOptions<E extends Catalog.Events> = LawsBaseOptions<E> & LawsSigning

/**
 * The scheme the laws sign deliveries with, as that sender does, and its keys; the receiver must
 * accept them.
 *
 * - `"StandardWebhooks"` (the default): `webhook-id`, `webhook-timestamp`, `webhook-signature`
 *   signed with every one of `secrets`; the body is `{ type, timestamp, data }` (`Catalog.encode`).
 * - `"Stripe"`: `Stripe-Signature: t=…,v1=…` with a `v1` per secret; the body is a Stripe event
 *   `{ id, object: "event", type, created, data }`, whose `id` is the delivery id and `created` the
 *   event's time (whole seconds).
 * - `"GitHub"`: `X-Hub-Signature-256` (the n-th message signed with the n-th secret, cycling),
 *   `X-GitHub-Event` the event type, `X-GitHub-Delivery` the delivery id; the body is the event's
 *   data, which must encode to a JSON object (others are not drawn). GitHub signs no timestamp and
 *   sends no event time: `Receiver.middleware` gives such an event the time it was received, so a
 *   receiver ordering by it is order-dependent (`reorderable` finds that; order by the data, or use
 *   `orderedBy`). See `Tamper` for the spoilings each scheme gets.
 *
 * @category models
 */
export type LawsSigning =
  | {
      readonly scheme?: "StandardWebhooks" | undefined
      readonly secrets: ReadonlyArray<Signature.Secret>
    }
  | { readonly scheme: "Stripe"; readonly secrets: ReadonlyArray<Redacted.Redacted<string>> }
  | { readonly scheme: "GitHub"; readonly secrets: ReadonlyArray<Redacted.Redacted<string>> }

/**
 * The options of `laws` besides the signing scheme.
 *
 * @category models
 */
export interface LawsBaseOptions<E extends Catalog.Events> extends Property.Options {
  /** The catalog the receiver decodes with; the events sent are its types. */
  readonly catalog: Catalog.Catalog<E>
  /** Makes a fresh receiver: called once or twice per case. */
  readonly receiver: () => Subject | Promise<Subject>
  /** The events to deliver; default `Testing.events(catalog)`. */
  readonly events?: fc.Arbitrary<Input<E>> | undefined
  /** Where deliveries are posted; default `http://receiver.test/webhooks`. */
  readonly url?: string | undefined
  /** Headers added to every delivery. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** The receiver's timestamp tolerance; default 5 minutes (the receiver middleware's). Not used for GitHub. */
  readonly tolerance?: Duration.Input | undefined
  /** The receiver's clock, epoch ms; default `Date.now` (a handler from `App.toWebHandler` runs on real time). */
  readonly now?: (() => number) | undefined
  /**
   * For receivers that rely on per-key order (the sender delivers events of one key in order):
   * `reorderable` then only tries orders that keep the events of each key in their original order.
   * Events with an `undefined` key may move anywhere.
   */
  readonly orderedBy?: ((event: Input<E>) => string | undefined) | undefined
  /**
   * What a duplicate of an accepted delivery may be answered with; default any 2xx. A 4xx makes the
   * sender retry it until it gives up (the receiver middleware's default `onDuplicate: "reject"`
   * answers 401; `"acknowledge"` answers 200).
   */
  readonly acknowledges?: ((status: number) => boolean) | undefined
  /** The most distinct messages per case; default 6. */
  readonly maxMessages?: number | undefined
  /**
   * How often the laws, like a sender, deliver again a message that was not answered with a 2xx
   * (a receiver may answer 409 to an event that came too early); default 2.
   */
  readonly retries?: number | undefined
  /**
   * Whether `idempotent` also sends copies of a message at the same time, as a sender retrying
   * after a timeout while its first attempt is still running does; default true. Turn it off only
   * for a receiver that is never given two requests at once (one worker behind a queue that the
   * handler under test leaves out).
   */
  readonly concurrentDuplicates?: boolean | undefined
}

/**
 * The delivery laws of one receiver; each runs a fast-check property and resolves when it holds,
 * or rejects with the seed, the path and the shrunk sequence of deliveries.
 *
 * @category models
 */
export interface Laws {
  /**
   * Idempotent under duplicate delivery: the messages of a case are delivered in a random order,
   * some several times (as a sender's retries are, with the same delivery id and a fresh
   * signature). Every duplicate of an accepted delivery is acknowledged (`acknowledges`, 2xx) and
   * leaves `observe` unchanged, and the final state equals that of a fresh receiver given each
   * message once, in the order of first arrival.
   *
   * With `concurrentDuplicates` (the default) some copies of a message are sent at the same time
   * (`Promise.all`). While one copy is being handled another may be answered non-2xx (the sender
   * retries it), but both may never take effect: the final state must still equal the reference,
   * and after the batch the message, sent once more, is acknowledged if any copy was answered 2xx
   * (taken as a retry otherwise). A receiver that checks for the id, then writes it across an
   * `await` without claiming it first, fails this.
   */
  readonly idempotent: (options?: Property.Options) => Promise<void>
  /**
   * Correct under reordering: a batch of messages delivered in its order and in a random
   * permutation (keeping per-key order with `orderedBy`) leaves two fresh receivers in equal states.
   */
  readonly reorderable: (options?: Property.Options) => Promise<void>
  /**
   * Verifies signatures: each message is delivered spoiled (see `Tamper` for the spoilings of each
   * scheme) and genuine, in either order. The spoiled delivery is answered 4xx and leaves `observe`
   * unchanged; the genuine one, with the same delivery id, is answered 2xx.
   */
  readonly verifiesSignatures: (options?: Property.Options) => Promise<void>
  /** The three, one after the other. */
  readonly all: (options?: Property.Options) => Promise<void>
}

/**
 * A law did not hold; the message says which, why, and the deliveries of the case in order with
 * their answers.
 *
 * @category errors
 */
export class LawViolation extends Error {
  readonly law: string
  readonly deliveries: ReadonlyArray<string>
  constructor(law: string, reason: string, trace: ReadonlyArray<string>) {
    super(`Law "${law}" broken: ${reason}\nDeliveries, in order:\n  ${trace.join("\n  ")}`)
    this.name = "LawViolation"
    this.law = law
    this.deliveries = trace
    // The runner's frames say nothing; the deliveries are the story.
    this.stack = `${this.name}: ${this.message}`
  }
}

type SchemeName = "StandardWebhooks" | "Stripe" | "GitHub"

interface Prepared<E extends Catalog.Events> {
  readonly id: string
  /** Its position in the case's batch (GitHub signs the n-th message with the n-th secret). */
  readonly index: number
  readonly input: Input<E>
  readonly payload: string
  /** Seconds from now its genuine deliveries are signed at. */
  readonly skew: number
}

interface Shot<E extends Catalog.Events> {
  readonly message: Prepared<E>
  readonly skew: number
  /** 1 for the first delivery of the message in the case. */
  readonly copy: number
  readonly tamper?: Tamper | undefined
}

const shorten = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, max)}…`)

const show = (value: unknown): string => inspect(value, { depth: 8, breakLength: 120, maxArrayLength: 50 })

const printable = <A extends object>(value: A, text: () => string): A => {
  // fast-check prints a counterexample with this method.
  Object.defineProperty(value, fc.toStringMethod, { value: text, enumerable: false })
  return value
}

const describeTamper = (tamper: Tamper, scheme: SchemeName = "StandardWebhooks"): string => {
  switch (tamper._tag) {
    case "Unsigned":
      return `without ${scheme === "StandardWebhooks" ? "webhook-signature" : scheme === "Stripe" ? "stripe-signature" : "x-hub-signature-256"}`
    case "NoHeaders":
      return scheme === "GitHub"
        ? "without x-hub-signature-256, x-github-event and x-github-delivery"
        : "without any webhook-* header"
    case "WrongKey":
      return "signed with another key"
    case "BodyByte":
      return `body byte ${tamper.at} changed (xor 0x${tamper.xor.toString(16)})`
    case "SignatureByte":
      return `signature byte ${tamper.at} changed (xor 0x${tamper.xor.toString(16)})`
    case "IdChar":
      return `${scheme === "Stripe" ? "the body's id" : "webhook-id"} character ${tamper.at} changed to ${JSON.stringify(tamper.char)}`
    case "TimestampShift":
      return `${scheme === "Stripe" ? "stripe-signature's t" : "webhook-timestamp"} moved ${tamper.by > 0 ? "+" : ""}${tamper.by}s after signing`
    case "Stale":
      return `signed ${tamper.by}s before the tolerance`
    case "Future":
      return `signed ${tamper.by}s beyond the tolerance, in the future`
  }
}

const describeShot = <E extends Catalog.Events>(
  shot: Shot<E>,
  scheme: SchemeName = "StandardWebhooks"
): string =>
  [
    `${shot.message.id} ${shot.message.input.type}${shot.copy > 1 ? ` (copy ${shot.copy})` : ""}`,
    shot.tamper === undefined
      ? scheme === "GitHub"
        ? "signed"
        : `signed at now${shot.skew >= 0 ? "+" : ""}${shot.skew}s`
      : describeTamper(shot.tamper, scheme),
    shorten(shot.message.payload, 160)
  ].join(", ")

const changeChar = (text: string, at: number, char: string): string => {
  const i = at % text.length
  const replacement = text[i] === char ? (char === "x" ? "y" : "x") : char
  return `${text.slice(0, i)}${replacement}${text.slice(i + 1)}`
}

const flipSignatures = (header: string, at: number, xor: number): string =>
  header
    .split(" ")
    .map((entry) => {
      const comma = entry.indexOf(",")
      const bytes = Buffer.from(entry.slice(comma + 1), "base64")
      if (bytes.length === 0) return entry
      bytes[at % bytes.length] = bytes[at % bytes.length]! ^ xor
      return `${entry.slice(0, comma)},${bytes.toString("base64")}`
    })
    .join(" ")

const flipHex = (hex: string, at: number, xor: number): string => {
  const bytes = Buffer.from(hex, "hex")
  if (bytes.length === 0) return hex
  bytes[at % bytes.length] = bytes[at % bytes.length]! ^ xor
  return bytes.toString("hex")
}

const isJsonObject = (value: unknown): boolean =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const is2xx = (status: number) => status >= 200 && status <= 299

/**
 * The delivery laws of a receiver: `idempotent`, `reorderable` and `verifiesSignatures` (see
 * `Laws`), each a fast-check property over deliveries of the catalog's events, signed like the
 * sender of `scheme` signs them (Standard Webhooks by default, as the dispatcher does; Stripe or
 * GitHub: see `LawsSigning`), a fresh signature per attempt and the same delivery id on every
 * attempt. Each case gets fresh receivers from `receiver`.
 *
 * @example
 * ```ts
 * const laws = Testing.laws({
 *   catalog: events,
 *   secrets: [secret],
 *   receiver: () => {
 *     const inbox = new Map<string, unknown>()
 *     const { handler, dispose } = App.toWebHandler(makeApp(inbox), Receiver.layerMemory())
 *     return { handler, dispose, observe: () => inbox }
 *   }
 * })
 * it("is idempotent", () => laws.idempotent())
 * ```
 * @category constructors
 */
export const laws = <E extends Catalog.Events>(options: LawsOptions<E>): Laws => {
  const catalog = options.catalog as unknown as Catalog.Any
  if (options.secrets.length === 0) throw new Error("Testing.laws needs at least one secret")
  const signing = (options.scheme === undefined ? { ...options, scheme: "StandardWebhooks" } : options) as
    | { readonly scheme: "StandardWebhooks"; readonly secrets: ReadonlyArray<Signature.Secret> }
    | { readonly scheme: "Stripe" | "GitHub"; readonly secrets: ReadonlyArray<Redacted.Redacted<string>> }
  const scheme: SchemeName = signing.scheme
  const url = options.url ?? "http://receiver.test/webhooks"
  const now = options.now ?? Date.now
  const tolerance = Math.ceil(
    Duration.toMillis(Duration.fromInputUnsafe(options.tolerance ?? Signature.defaultTolerance)) / 1000
  )
  const acknowledges = options.acknowledges ?? is2xx
  const maxMessages = Math.max(2, options.maxMessages ?? 6)
  const retries = options.retries ?? 2
  const concurrent = options.concurrentDuplicates ?? true
  const wrongKey = Signature.generateV1()
  const wrongSecret = Redacted.make(`whsec_${randomBytes(24).toString("base64")}`)
  const encodedData = (input: Input<E>): unknown =>
    (
      JSON.parse(Catalog.encode(catalog, input.type, input.data, { timestamp: new Date(baseTime) })) as {
        readonly data: unknown
      }
    ).data
  const given = options.events ?? events(options.catalog)
  // GitHub's body is the data itself, which the receiver takes only as a JSON object.
  const eventArb = scheme === "GitHub" ? given.filter((input) => isJsonObject(encodedData(input))) : given
  const skewArb = fc.integer({ min: -Math.floor(tolerance / 2), max: Math.floor(tolerance / 4) })
  const idPrefix = scheme === "StandardWebhooks" ? "msg" : scheme === "Stripe" ? "evt" : "dlv"

  const payloadOf = (id: string, input: Input<E>, timestamp: Date): string => {
    switch (scheme) {
      case "StandardWebhooks":
        return Catalog.encode(catalog, input.type, input.data, { timestamp })
      case "Stripe":
        return JSON.stringify({
          id,
          object: "event",
          type: input.type,
          created: Math.floor(timestamp.getTime() / 1000),
          data: encodedData(input)
        })
      case "GitHub":
        return JSON.stringify(encodedData(input))
    }
  }

  const messages = (minLength: number): fc.Arbitrary<ReadonlyArray<Prepared<E>>> =>
    fc
      .array(fc.tuple(eventArb, fc.integer({ min: 0, max: 59 }), skewArb), {
        minLength,
        maxLength: maxMessages
      })
      .map((drawn) =>
        drawn.map(([input, second, skew], i) => {
          const id = `${idPrefix}_${i + 1}`
          return {
            id,
            index: i,
            input,
            payload: payloadOf(id, input, input.timestamp ?? new Date(baseTime + second * 1000)),
            skew
          }
        })
      )

  const build = (shot: Shot<E>): Request => {
    const nowSeconds = Math.floor(now() / 1000)
    const { message, tamper } = shot
    let signedAt = nowSeconds + shot.skew
    let sentAt = signedAt
    let sentId = message.id
    let body: string | Uint8Array = message.payload
    if (tamper?._tag === "Stale") signedAt = sentAt = nowSeconds - tolerance - tamper.by
    if (tamper?._tag === "Future") signedAt = sentAt = nowSeconds + tolerance + tamper.by
    if (tamper?._tag === "TimestampShift") sentAt = signedAt + tamper.by
    if (tamper?._tag === "IdChar") sentId = changeChar(message.id, tamper.at, tamper.char)
    const headers: Record<string, string> = { "content-type": "application/json", ...options.headers }
    switch (signing.scheme) {
      case "StandardWebhooks": {
        const signed = Signature.sign(
          { id: message.id, timestamp: signedAt, payload: message.payload },
          tamper?._tag === "WrongKey" ? [wrongKey] : signing.secrets
        )
        headers["webhook-id"] = sentId
        headers["webhook-timestamp"] = String(sentAt)
        headers["webhook-signature"] =
          tamper?._tag === "SignatureByte"
            ? flipSignatures(signed["webhook-signature"], tamper.at, tamper.xor)
            : signed["webhook-signature"]
        if (tamper?._tag === "Unsigned" || tamper?._tag === "NoHeaders") delete headers["webhook-signature"]
        if (tamper?._tag === "NoHeaders") {
          delete headers["webhook-id"]
          delete headers["webhook-timestamp"]
        }
        break
      }
      case "Stripe": {
        const keys = tamper?._tag === "WrongKey" ? [wrongSecret] : signing.secrets
        const prefix = `t=${signedAt},`
        const entries = keys.map((key) => {
          const entry = Signature.signStripe({ timestamp: signedAt, payload: message.payload }, key).slice(
            prefix.length
          )
          return tamper?._tag === "SignatureByte"
            ? `v1=${flipHex(entry.slice(3), tamper.at, tamper.xor)}`
            : entry
        })
        if (tamper?._tag !== "Unsigned" && tamper?._tag !== "NoHeaders")
          headers["stripe-signature"] = `t=${sentAt},${entries.join(",")}`
        // The id is in the signed body: changed after signing.
        if (tamper?._tag === "IdChar")
          body = message.payload.replace(JSON.stringify(message.id), JSON.stringify(sentId))
        break
      }
      case "GitHub": {
        const key =
          tamper?._tag === "WrongKey" ? wrongSecret : signing.secrets[message.index % signing.secrets.length]!
        const signature = Signature.signGithub(message.payload, key)
        if (tamper?._tag !== "NoHeaders") {
          headers["x-github-event"] = message.input.type
          headers["x-github-delivery"] = message.id
          if (tamper?._tag !== "Unsigned")
            headers["x-hub-signature-256"] =
              tamper?._tag === "SignatureByte"
                ? `sha256=${flipHex(signature.slice(7), tamper.at, tamper.xor)}`
                : signature
        }
        break
      }
    }
    if (tamper?._tag === "BodyByte") {
      const bytes = new TextEncoder().encode(message.payload)
      const i = tamper.at % bytes.length
      bytes[i] = bytes[i]! ^ tamper.xor
      body = bytes
    }
    return new Request(url, { method: "POST", headers, body: body as BodyInit })
  }

  /** One case's run: the deliveries made so far, printed, and how to fail with them. */
  const makeRun = (law: string) => {
    const trace: Array<string> = []
    const fail = (reason: string): never => {
      throw new LawViolation(law, reason, trace)
    }
    const send = async (subject: Subject, shot: Shot<E>, label = ""): Promise<number> => {
      let response: Response
      try {
        response = await subject.handler(build(shot))
      } catch (error) {
        trace.push(`${label}${describeShot(shot, scheme)} → threw`)
        return fail(`the handler threw ${show(error)}`)
      }
      const text = await response.text().catch(() => "")
      trace.push(
        `${label}${describeShot(shot, scheme)} → ${response.status}${text === "" ? "" : ` ${shorten(text, 160)}`}`
      )
      return response.status
    }
    const observe = async (subject: Subject): Promise<unknown> => {
      try {
        return await subject.observe()
      } catch (error) {
        return fail(`observe threw ${show(error)}`)
      }
    }
    /** Delivers in order, then again (fresh signatures) what was not answered 2xx, like a sender. */
    const deliverAll = async (subject: Subject, shots: ReadonlyArray<Shot<E>>, label: string) => {
      const accepted = new Set<string>()
      const copies = new Map<string, number>()
      const once = async (shot: Shot<E>) => {
        const copy = (copies.get(shot.message.id) ?? 0) + 1
        copies.set(shot.message.id, copy)
        if (is2xx(await send(subject, { ...shot, copy }, label))) accepted.add(shot.message.id)
      }
      for (const shot of shots) await once(shot)
      for (let round = 0; round < retries; round++) {
        const left = shots.filter((shot, i) => !accepted.has(shot.message.id) && shots.indexOf(shot) === i)
        for (const shot of left) await once(shot)
      }
    }
    return { trace, fail, send, observe, deliverAll }
  }

  const withReceiver = async <A>(use: (subject: Subject) => Promise<A>): Promise<A> => {
    const subject = await options.receiver()
    try {
      return await use(subject)
    } finally {
      await subject.dispose?.()
    }
  }

  const parameters = (call: Property.Options | undefined): fc.Parameters<any> => {
    const merged = { ...options, ...call }
    return {
      ...options.parameters,
      ...call?.parameters,
      ...(merged.seed === undefined ? {} : { seed: merged.seed }),
      ...(merged.path === undefined ? {} : { path: merged.path }),
      ...(merged.numRuns === undefined ? {} : { numRuns: merged.numRuns }),
      ...(merged.endOnFailure === undefined ? {} : { endOnFailure: merged.endOnFailure }),
      includeErrorInReport: true
    }
  }

  // --- idempotent -----------------------------------------------------------------------------------

  const duplicatedCases = fc
    .tuple(
      messages(1),
      fc.array(fc.record({ pick: fc.nat(), skew: skewArb, alongside: fc.boolean() }), {
        minLength: 1,
        maxLength: 2 * maxMessages
      }),
      fc.array(fc.nat(), { maxLength: 3 * maxMessages })
    )
    .map(([batch, extra, keys]) => {
      // A copy sent `alongside` goes out at the same time as the first copy of its message, as a
      // sender's retry after a timeout while the first attempt still runs; the others go one by one.
      const together = (e: { readonly alongside: boolean }) => concurrent && e.alongside
      const shots = [
        ...batch.map((message) => ({ message, skew: message.skew })),
        ...extra
          .filter((e) => !together(e))
          .map(({ pick, skew }) => ({ message: batch[pick % batch.length]!, skew }))
      ]
      const groups = shots
        .map((shot, i) => ({ shot, key: keys[i] ?? i }))
        .toSorted((a, b) => a.key - b.key)
        .map(({ shot }) => [shot])
      for (const { pick, skew } of extra.filter(together)) {
        const message = batch[pick % batch.length]!
        groups.find((group) => group[0]!.message.id === message.id)!.push({ message, skew })
      }
      const seen = new Map<string, number>()
      const numbered: ReadonlyArray<ReadonlyArray<Shot<E>>> = groups.map((group) =>
        group.map((shot) => {
          const copy = (seen.get(shot.message.id) ?? 0) + 1
          seen.set(shot.message.id, copy)
          return { ...shot, copy }
        })
      )
      return printable(
        { groups: numbered },
        () =>
          `\n  ${numbered
            .map((group) =>
              group.length === 1
                ? describeShot(group[0]!, scheme)
                : `at once: ${group.map((shot) => describeShot(shot, scheme)).join("\n           ")}`
            )
            .join("\n  ")}`
      )
    })

  const idempotent = (call?: Property.Options) =>
    fc.assert(
      fc.asyncProperty(duplicatedCases, async ({ groups }) => {
        const run = makeRun("idempotent under duplicate delivery")
        const shots = groups.flat()
        const withDuplicates = await withReceiver(async (subject) => {
          const accepted = new Set<string>()
          const unchanged = async (what: string, send: () => Promise<void>) => {
            const before = await run.observe(subject)
            await send()
            const after = await run.observe(subject)
            if (!isDeepStrictEqual(before, after))
              run.fail(`${what} changed the state\nfrom ${show(before)}\nto   ${show(after)}`)
          }
          const acknowledged = (shot: Shot<E>, status: number, how: string) => {
            if (!acknowledges(status))
              run.fail(
                `copy ${shot.copy} of ${shot.message.id}, already accepted, was answered ${status}${how}: the sender retries it until it gives up (acknowledge duplicates with a 2xx; Receiver.middleware: onDuplicate: "acknowledge")`
              )
          }
          for (const group of groups) {
            if (group.length === 1) {
              const shot = group[0]!
              if (!accepted.has(shot.message.id)) {
                if (is2xx(await run.send(subject, shot))) accepted.add(shot.message.id)
                continue
              }
              await unchanged(`copy ${shot.copy} of ${shot.message.id}, already accepted,`, async () =>
                acknowledged(shot, await run.send(subject, shot), "")
              )
              continue
            }
            // Copies of one message at once: one may be refused while another is handled, but a
            // message accepted before must be acknowledged, and then again after the batch.
            const first = group[0]!
            const send = async () => {
              const wasAccepted = accepted.has(first.message.id)
              const statuses = await Promise.all(group.map((shot) => run.send(subject, shot, "at once: ")))
              group.forEach((shot, i) => {
                if (wasAccepted) acknowledged(shot, statuses[i]!, " (sent with other copies at once)")
                else if (is2xx(statuses[i]!)) accepted.add(shot.message.id)
              })
            }
            if (accepted.has(first.message.id))
              await unchanged(`copies of ${first.message.id}, already accepted, sent at once,`, send)
            else await send()
            const again: Shot<E> = { ...first, copy: group.at(-1)!.copy + 1 }
            if (accepted.has(first.message.id))
              await unchanged(`${first.message.id}, sent again after copies of it at once,`, async () =>
                acknowledged(again, await run.send(subject, again, "after the batch: "), " after the batch")
              )
            else if (is2xx(await run.send(subject, again, "after the batch: ")))
              accepted.add(first.message.id)
          }
          for (let round = 0; round < retries; round++) {
            for (const shot of shots) {
              if (shot.copy !== 1 || accepted.has(shot.message.id)) continue
              if (is2xx(await run.send(subject, { ...shot, copy: 0 }, "retry: ")))
                accepted.add(shot.message.id)
            }
          }
          return run.observe(subject)
        })
        const once = await withReceiver(async (subject) => {
          await run.deliverAll(
            subject,
            shots.filter((shot) => shot.copy === 1),
            "reference, each once: "
          )
          return run.observe(subject)
        })
        if (!isDeepStrictEqual(once, withDuplicates))
          run.fail(
            `with duplicates the receiver ended in another state than with each message once\nonce:            ${show(once)}\nwith duplicates: ${show(withDuplicates)}`
          )
      }),
      parameters(call)
    )

  // --- reorderable ----------------------------------------------------------------------------------

  const reorderedCases = fc
    .tuple(messages(2), fc.array(fc.nat(), { minLength: maxMessages, maxLength: maxMessages }))
    .map(([batch, keys]) => {
      let order = batch.map((_, i) => i).toSorted((a, b) => (keys[a] ?? a) - (keys[b] ?? b) || a - b)
      if (options.orderedBy !== undefined) {
        // The positions the permutation gives a key's events are refilled with them in their order.
        const keyOf = batch.map((message) => options.orderedBy!(message.input))
        const queues = new Map<string, Array<number>>()
        batch.forEach((_, i) => {
          const key = keyOf[i]
          if (key !== undefined) queues.set(key, [...(queues.get(key) ?? []), i])
        })
        order = order.map((i) => {
          const key = keyOf[i]
          return key === undefined ? i : queues.get(key)!.shift()!
        })
      }
      const toShot = (message: Prepared<E>): Shot<E> => ({ message, skew: message.skew, copy: 1 })
      const inOrder = batch.map(toShot)
      const permuted = order.map((i) => toShot(batch[i]!))
      return printable(
        { inOrder, permuted },
        () =>
          `\n  in order: ${inOrder.map((shot) => describeShot(shot, scheme)).join("\n            ")}\n  permuted: ${permuted.map((s) => s.message.id).join(", ")}`
      )
    })

  const reorderable = (call?: Property.Options) =>
    fc.assert(
      fc.asyncProperty(reorderedCases, async ({ inOrder, permuted }) => {
        const run = makeRun("correct under reordering")
        const first = await withReceiver(async (subject) => {
          await run.deliverAll(subject, inOrder, "in order: ")
          return run.observe(subject)
        })
        const second = await withReceiver(async (subject) => {
          await run.deliverAll(subject, permuted, "permuted: ")
          return run.observe(subject)
        })
        if (!isDeepStrictEqual(first, second))
          run.fail(
            `the same messages in another order left another state\nin order: ${show(first)}\npermuted: ${show(second)}`
          )
      }),
      parameters(call)
    )

  // --- verifiesSignatures ---------------------------------------------------------------------------

  const half = Math.max(1, Math.floor(tolerance / 2))
  const byteArb = <T extends "BodyByte" | "SignatureByte">(tag: T) =>
    fc.record({ _tag: fc.constant(tag), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) })
  const everyScheme: ReadonlyArray<fc.Arbitrary<Tamper>> = [
    fc.constant({ _tag: "Unsigned" } as const),
    fc.constant({ _tag: "WrongKey" } as const),
    byteArb("BodyByte"),
    byteArb("SignatureByte")
  ]
  // GitHub signs neither a timestamp nor its delivery id (see `Tamper`); Stripe has one header.
  const timed: ReadonlyArray<fc.Arbitrary<Tamper>> = [
    fc.record({
      _tag: fc.constant("IdChar" as const),
      at: fc.nat(),
      char: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789_-")
    }),
    fc.record({
      _tag: fc.constant("TimestampShift" as const),
      by: fc.oneof(fc.integer({ min: 1, max: half }), fc.integer({ min: -half, max: -1 }))
    }),
    fc.record({ _tag: fc.constant("Stale" as const), by: fc.integer({ min: 2, max: 366 * 86_400 }) }),
    fc.record({ _tag: fc.constant("Future" as const), by: fc.integer({ min: 2, max: 366 * 86_400 }) })
  ]
  const noHeaders: ReadonlyArray<fc.Arbitrary<Tamper>> = [fc.constant({ _tag: "NoHeaders" } as const)]
  const tamperArb: fc.Arbitrary<Tamper> = fc.oneof(
    ...(scheme === "StandardWebhooks"
      ? [...everyScheme, ...noHeaders, ...timed]
      : scheme === "Stripe"
        ? [...everyScheme, ...timed]
        : [...everyScheme, ...noHeaders])
  )

  const tamperedCases = fc
    .tuple(
      messages(1),
      fc.array(fc.record({ tamper: tamperArb, genuineFirst: fc.boolean() }), {
        minLength: maxMessages,
        maxLength: maxMessages
      })
    )
    .map(([batch, spoils]) => {
      const items = batch.map((message, i) => ({ message, ...spoils[i]! }))
      return printable(
        { items },
        () =>
          `\n  ${items
            .map(
              (item) =>
                `${item.message.id} ${describeTamper(item.tamper, scheme)}, ${item.genuineFirst ? "after" : "before"} the genuine one`
            )
            .join("\n  ")}`
      )
    })

  const verifiesSignatures = (call?: Property.Options) =>
    fc.assert(
      fc.asyncProperty(tamperedCases, async ({ items }) => {
        const run = makeRun("verifies signatures")
        await withReceiver(async (subject) => {
          for (const { message, tamper, genuineFirst } of items) {
            const genuine = async (copy: number) => {
              const status = await run.send(subject, { message, skew: message.skew, copy })
              if (!is2xx(status))
                run.fail(
                  `the correctly signed delivery of ${message.id} was answered ${status}, not 2xx (narrow \`events\` to what the receiver accepts)`
                )
            }
            if (genuineFirst) await genuine(1)
            const before = await run.observe(subject)
            const status = await run.send(subject, {
              message,
              skew: message.skew,
              copy: genuineFirst ? 2 : 1,
              tamper
            })
            if (status < 400 || status > 499)
              run.fail(
                `a delivery ${describeTamper(tamper, scheme)} was answered ${status}; it must be refused with a 4xx (401 or 400)`
              )
            const after = await run.observe(subject)
            if (!isDeepStrictEqual(before, after))
              run.fail(
                `a refused delivery (${describeTamper(tamper, scheme)}) changed the state\nfrom ${show(before)}\nto   ${show(after)}`
              )
            if (!genuineFirst) await genuine(2)
          }
        })
      }),
      parameters(call)
    )

  return {
    idempotent,
    reorderable,
    verifiesSignatures,
    all: async (call) => {
      await idempotent(call)
      await reorderable(call)
      await verifiesSignatures(call)
    }
  }
}
