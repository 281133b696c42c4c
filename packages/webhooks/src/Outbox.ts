/**
 * The durable outbox of webhook messages: `send` records a message and one delivery per subscribed,
 * enabled endpoint before it returns; dispatchers lease due deliveries, attempt them and record each
 * attempt. Use `send` from application code, the log queries (`deliveries`, `attempts`,
 * `deadLetters`), the repairs (`retry`, `recover`) and retention (`prune`) from admin code, and
 * `events` to learn when an endpoint is disabled or a delivery is dead-lettered.
 *
 * The store is a service with two implementations: `OutboxSqlite` (one file, the default) and
 * `OutboxPostgres` (several dispatcher processes on one database). Both keep these invariants:
 * - every delivery ends in exactly one terminal state — `delivered`, `failed` (dead letter) or
 *   `disabled` (its endpoint was disabled) — and only a manual `retry`/`recover` reopens it;
 * - at-least-once: a leased delivery whose dispatcher dies is leased again once its lease expires;
 * - an attempt is recorded at most once: attempts are keyed by (message, endpoint, number) and a
 *   completion only applies under the lease it was made with, so a stale worker cannot count twice.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as PubSub from "effect/PubSub"
import type * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Catalog from "./Catalog.ts"
import type * as Endpoint from "./Endpoint.ts"

// ---------------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------------

/**
 * Where a delivery stands. `pending` is the only non-terminal state.
 *
 * @category models
 */
export type DeliveryState = "pending" | "delivered" | "failed" | "disabled"

/**
 * The states a delivery ends in.
 *
 * @category models
 */
export type TerminalState = Exclude<DeliveryState, "pending">

/**
 * A recorded message. `payload` is the exact body every attempt sends and signs.
 *
 * @category models
 */
export interface Message {
  readonly id: string
  readonly eventType: string
  readonly payload: string
  readonly idempotencyKey: string | null
  readonly createdAt: number
}

/**
 * One message's delivery to one endpoint.
 *
 * @category models
 */
export interface Delivery {
  readonly messageId: string
  readonly endpointId: string
  readonly eventType: string
  readonly state: DeliveryState
  /** Attempts recorded so far (all rounds). */
  readonly attempts: number
  /** When the next attempt is due (`pending` only; while leased, when the lease expires). */
  readonly nextAt: number | null
  readonly lastStatus: number | null
  readonly lastError: string | null
  readonly createdAt: number
  readonly updatedAt: number
}

/**
 * One recorded attempt.
 *
 * @category models
 */
export interface Attempt {
  readonly messageId: string
  readonly endpointId: string
  /** 1-based, over the delivery's whole life. */
  readonly attempt: number
  readonly startedAt: number
  readonly durationMs: number
  /** The response status, or `null` when there was no response (timeout, connection error). */
  readonly status: number | null
  /** The response body's first 4 KiB (UTF-8, cut on a character boundary). */
  readonly responseBody: string
  readonly error: string | null
  /** The decision taken: `delivered`, `retry`, `failed` or `disabled`. */
  readonly result: "delivered" | "retry" | "failed" | "disabled"
}

/**
 * What the store tells the application.
 *
 * - `EndpointDisabled`: an endpoint answered 410 or failed for the policy's `disableAfter`.
 * - `DeliveryFailed`: a delivery exhausted its schedule (it is now a dead letter).
 *
 * @category models
 */
export type Event =
  | {
      readonly _tag: "EndpointDisabled"
      readonly endpointId: string
      readonly reason: Endpoint.DisabledReason
      readonly at: number
    }
  | {
      readonly _tag: "DeliveryFailed"
      readonly messageId: string
      readonly endpointId: string
      readonly at: number
    }

/**
 * A message to record, its body already encoded.
 *
 * @category models
 */
export interface Outgoing {
  readonly eventType: string
  readonly payload: string
  /** Sending twice with one key inside the store's idempotency window records one message. */
  readonly idempotencyKey?: string | undefined
  /** The message id (the `webhook-id`); a fresh `msg_…` by default. */
  readonly id?: string | undefined
}

/**
 * What `send` recorded.
 *
 * @category models
 */
export interface Sent {
  readonly id: string
  /** How many deliveries were created (0 for a duplicate). */
  readonly deliveries: number
  /** The idempotency key was seen inside the window: nothing new was recorded. */
  readonly duplicate: boolean
}

/**
 * Filters of `deliveries`. Results are newest first.
 *
 * @category models
 */
export interface DeliveryQuery {
  readonly messageId?: string | undefined
  readonly endpointId?: string | undefined
  readonly state?: DeliveryState | undefined
  /** Updated at or after (epoch ms). */
  readonly since?: number | undefined
  /** Updated before (epoch ms): pass the last row's `updatedAt` to page. */
  readonly before?: number | undefined
  /** Default 100, at most 1000. */
  readonly limit?: number | undefined
}

/**
 * Which deliveries `recover` re-sends: those of `endpointId` (all endpoints when omitted) that ended
 * `failed` or `disabled` at or after `since`. Endpoints that are disabled are left out: enable one
 * first to recover its deliveries.
 *
 * @category models
 */
export interface RecoverQuery {
  readonly endpointId?: string | undefined
  readonly since: number
}

/**
 * Which messages `prune` deletes, with their deliveries and attempts: those whose every delivery
 * ended (in one of `states`) before `before`, and that were recorded before it too (a message without
 * deliveries counts from when it was recorded). Whatever the query, a message is kept while any of
 * its deliveries is pending (waiting, leased or reopened), and for the store's idempotency window
 * after it was recorded, so a `send` repeating its idempotency key or its id inside the window is
 * still a duplicate.
 *
 * @category models
 */
export interface PruneQuery {
  /** The cutoff (epoch ms): deliveries that ended at or after it keep their message. */
  readonly before: number
  /** Only messages whose deliveries all ended in one of these; default all three terminal states. */
  readonly states?: ReadonlyArray<TerminalState> | undefined
  /** The most messages deleted by this call; default no limit. */
  readonly limit?: number | undefined
  /** Messages looked at per transaction, so no transaction holds the store for long; default 500. */
  readonly batchSize?: number | undefined
}

/**
 * What `prune` deleted.
 *
 * @category models
 */
export interface Pruned {
  readonly messages: number
  readonly deliveries: number
  readonly attempts: number
}

/**
 * The key of one delivery.
 *
 * @category models
 */
export interface DeliveryKey {
  readonly messageId: string
  readonly endpointId: string
}

// ---------------------------------------------------------------------------------------------------
// What dispatchers use
// ---------------------------------------------------------------------------------------------------

/**
 * A delivery leased to one dispatcher until `leaseUntil`.
 *
 * @category dispatch
 */
export interface Lease {
  readonly messageId: string
  readonly endpointId: string
  readonly eventType: string
  readonly payload: string
  /** Fences the completion: only the holder of the latest lease can record the attempt. */
  readonly leaseSeq: number
  readonly leaseUntil: number
  /** The number this attempt will be recorded with (1-based, over the delivery's life). */
  readonly attempt: number
  /** A manual retry: one attempt, never rescheduled. */
  readonly manual: boolean
}

/**
 * How many deliveries a dispatcher can take now, per endpoint.
 *
 * @category dispatch
 */
export interface LeaseRequest {
  readonly owner: string
  readonly leaseMillis: number
  /** Free capacity per endpoint id; endpoints not listed are not leased from. */
  readonly capacity: ReadonlyArray<readonly [endpointId: string, free: number]>
  /** At most this many in all. */
  readonly limit: number
}

/**
 * What the store says when a dispatcher is about to attempt a lease: `attempt` (the lease holds and
 * the endpoint is enabled), `disabled` (the endpoint is disabled: the delivery was ended `disabled`
 * instead) or `lost` (the lease was retaken or the delivery ended or was removed: leave it alone).
 *
 * @category dispatch
 */
export type StartVerdict = "attempt" | "disabled" | "lost"

/**
 * The outcome of one leased attempt, as the dispatcher decided it.
 *
 * @category dispatch
 */
export interface Completion {
  readonly lease: Lease
  readonly startedAt: number
  readonly endedAt: number
  readonly status: number | null
  readonly responseBody: string
  readonly error: string | null
  /** A 2xx: resets the endpoint's failure run. */
  readonly ok: boolean
  readonly next:
    | { readonly _tag: "Delivered" }
    | { readonly _tag: "Retry"; readonly at: number }
    | { readonly _tag: "Failed" }
    | { readonly _tag: "Disable" }
}

// ---------------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------------

/**
 * The store failed (I/O, a broken file, a lost connection). Deliveries are not lost: an unrecorded
 * attempt is made again once its lease expires.
 *
 * @category errors
 */
export class StoreError extends Data.TaggedError("OutboxStoreError")<{ readonly cause: unknown }> {}

/**
 * The outbox store. Applications use the module functions (`send`, `deliveries`, …) rather than this
 * shape; dispatchers use the `lease`/`start`/`complete` family.
 *
 * @category services
 */
export class Store extends Context.Service<
  Store,
  {
    readonly send: (message: Outgoing) => Effect.Effect<Sent, StoreError>
    /** Records several messages in one transaction. */
    readonly sendAll: (messages: ReadonlyArray<Outgoing>) => Effect.Effect<ReadonlyArray<Sent>, StoreError>
    readonly message: (id: string) => Effect.Effect<Option.Option<Message>, StoreError>
    readonly deliveries: (query: DeliveryQuery) => Effect.Effect<ReadonlyArray<Delivery>, StoreError>
    /** The attempts of one delivery, in order. */
    readonly attempts: (key: DeliveryKey) => Effect.Effect<ReadonlyArray<Attempt>, StoreError>
    /**
     * Reopens a terminal delivery for one manual attempt, due now. False when there is no such
     * delivery, it is still pending, or its endpoint is disabled (enable it first).
     */
    readonly retry: (key: DeliveryKey) => Effect.Effect<boolean, StoreError>
    /**
     * Reopens every matching delivery of an enabled endpoint for one manual attempt each; returns how
     * many.
     */
    readonly recover: (query: RecoverQuery) => Effect.Effect<number, StoreError>
    /**
     * Deletes old messages with their deliveries and attempts, a batch per transaction (see
     * `PruneQuery` for which ones, and what is always kept).
     */
    readonly prune: (query: PruneQuery) => Effect.Effect<Pruned, StoreError>
    /** Application-facing notifications; subscribe before acting on what you expect to see. */
    readonly events: PubSub.PubSub<Event>

    readonly endpoints: {
      /** False when the id exists. */
      readonly insert: (endpoint: Endpoint.Endpoint) => Effect.Effect<boolean, StoreError>
      readonly get: (id: string) => Effect.Effect<Option.Option<Endpoint.Endpoint>, StoreError>
      readonly list: Effect.Effect<ReadonlyArray<Endpoint.Endpoint>, StoreError>
      /**
       * Read-modify-write in one transaction (`now` from the Clock). Disabling ends the endpoint's
       * waiting deliveries as `disabled`.
       */
      readonly update: (
        id: string,
        f: (endpoint: Endpoint.Endpoint, now: number) => Endpoint.Endpoint
      ) => Effect.Effect<Option.Option<Endpoint.Endpoint>, StoreError>
      readonly remove: (id: string) => Effect.Effect<boolean, StoreError>
      /** Moves on every endpoint write (not on health bookkeeping): dispatchers reload when it moves. */
      readonly revision: Effect.Effect<number, StoreError>
    }

    /** Leases due deliveries of enabled endpoints, oldest first per endpoint. */
    readonly lease: (request: LeaseRequest) => Effect.Effect<ReadonlyArray<Lease>, StoreError>
    /**
     * Records attempts and moves their deliveries on, in one transaction; folds each into its
     * endpoint's health and disables endpoints that answered 410 or failed for `disableAfter`.
     * Returns, per completion, whether it applied (false: its lease was lost and retaken).
     */
    readonly complete: (
      completions: ReadonlyArray<Completion>,
      options: { readonly disableAfter: number }
    ) => Effect.Effect<ReadonlyArray<boolean>, StoreError>
    /**
     * Asked right before attempts start: whether each lease still holds and its endpoint is still
     * enabled. A delivery whose endpoint was disabled since it was leased is ended `disabled` here,
     * in the same step, so it is never attempted and never left pending. One verdict per lease, in
     * order.
     */
    readonly start: (leases: ReadonlyArray<Lease>) => Effect.Effect<ReadonlyArray<StartVerdict>, StoreError>
    /** Gives leases back unattempted (shutdown): the deliveries are due again now. */
    readonly release: (leases: ReadonlyArray<Lease>) => Effect.Effect<void, StoreError>
    /** The earliest time a pending delivery of an enabled endpoint is due, if any. */
    readonly nextDue: Effect.Effect<Option.Option<number>, StoreError>
    /** Ends, as `disabled`, due deliveries of disabled endpoints (e.g. leases a dead worker held). */
    readonly sweep: Effect.Effect<number, StoreError>
    /** Completes at the next local write that may make work due (send, retry, recover, endpoint change). */
    readonly changed: Effect.Effect<void>
  }
>()("@strata/webhooks/Outbox/Store") {}

// ---------------------------------------------------------------------------------------------------
// Application API
// ---------------------------------------------------------------------------------------------------

/**
 * Records an event of the catalog for every subscribed, enabled endpoint, and returns once it is
 * durable. The body is the catalog's envelope `{ type, timestamp, data }`; an unknown type or a
 * wrong payload does not compile.
 *
 * With `OutboxPostgres`, a `send` inside the application's `sql.withTransaction` is part of that
 * transaction: the message exists if and only if the application's own writes commit.
 *
 * @example
 * ```ts
 * yield* Outbox.send(events, "user.created", { id: "u_1", email: "ada@example.com" }, {
 *   idempotencyKey: "signup-u_1"
 * })
 * ```
 * @category sending
 */
export const send = <E extends Catalog.Events, K extends Catalog.Type<E>>(
  catalog: Catalog.Catalog<E>,
  type: K,
  data: Catalog.Data<E, K>,
  options?: { readonly idempotencyKey?: string | undefined; readonly id?: string | undefined }
): Effect.Effect<Sent, StoreError | Schema.SchemaError, Store> =>
  Effect.flatMap(Catalog.encodeEffect(catalog, type, data), (payload) =>
    Effect.flatMap(Store, (store) =>
      store.send({ eventType: type, payload, idempotencyKey: options?.idempotencyKey, id: options?.id })
    )
  )

/**
 * Records a message whose body is already encoded (a replay from elsewhere, a non-catalog event).
 *
 * @category sending
 */
export const sendEncoded = (message: Outgoing): Effect.Effect<Sent, StoreError, Store> =>
  Effect.flatMap(Store, (store) => store.send(message))

/**
 * The delivery log, newest first.
 *
 * @category queries
 */
export const deliveries = (
  query: DeliveryQuery = {}
): Effect.Effect<ReadonlyArray<Delivery>, StoreError, Store> =>
  Effect.flatMap(Store, (store) => store.deliveries(query))

/**
 * The attempts of one delivery, in order, with their statuses, durations and truncated bodies.
 *
 * @category queries
 */
export const attempts = (key: DeliveryKey): Effect.Effect<ReadonlyArray<Attempt>, StoreError, Store> =>
  Effect.flatMap(Store, (store) => store.attempts(key))

/**
 * Dead letters: deliveries that exhausted their schedule, newest first.
 *
 * @category queries
 */
export const deadLetters = (
  query: Omit<DeliveryQuery, "state"> = {}
): Effect.Effect<ReadonlyArray<Delivery>, StoreError, Store> => deliveries({ ...query, state: "failed" })

/**
 * Re-sends one terminal delivery once (a manual retry: it is not rescheduled if it fails again).
 *
 * @category repairs
 */
export const retry = (key: DeliveryKey): Effect.Effect<boolean, StoreError, Store> =>
  Effect.flatMap(Store, (store) => store.retry(key))

/**
 * Re-sends, once each, every delivery that ended `failed` or `disabled` since a time (for one
 * endpoint, or all): the repair after an endpoint's outage.
 *
 * @category repairs
 */
export const recover = (query: RecoverQuery): Effect.Effect<number, StoreError, Store> =>
  Effect.flatMap(Store, (store) => store.recover(query))

/**
 * Options of `prune`: `PruneQuery` with the cutoff given as an age or a time.
 *
 * @category models
 */
export interface PruneOptions extends Omit<PruneQuery, "before"> {
  /** Deliveries that ended longer ago than this (measured back from the Clock's now), or before this time. */
  readonly olderThan: Duration.Input | Date
}

/**
 * Retention: deletes the messages whose deliveries all ended before a cutoff, with their deliveries
 * and attempts, in short transactions, and returns how many of each. Messages with a pending delivery
 * and messages inside the store's idempotency window are never deleted. Deleted deliveries leave the
 * log, `deadLetters` and the reach of `retry`/`recover`: keep dead letters longer with `states`.
 *
 * @example
 * ```ts
 * // Delivered messages after a week; dead letters after 30 days.
 * yield* Outbox.prune({ olderThan: "7 days", states: ["delivered"] })
 * yield* Outbox.prune({ olderThan: "30 days" })
 * ```
 * @category retention
 */
export const prune = (options: PruneOptions): Effect.Effect<Pruned, StoreError, Store> =>
  Effect.flatMap(Store, (store) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const { olderThan, ...query } = options
      const before = olderThan instanceof Date ? olderThan.getTime() : now - Duration.toMillis(olderThan)
      return store.prune({ ...query, before })
    })
  )

/**
 * The store's events as a stream (endpoint disabled, delivery dead-lettered). Only events published
 * after the stream starts are seen.
 *
 * @category events
 */
export const events: Stream.Stream<Event, never, Store> = Stream.unwrap(
  Effect.map(Store, (store) => Stream.fromPubSub(store.events))
)
