/**
 * What the SQLite and Postgres outbox stores share: the row shapes and their decoding, and the plan
 * that turns a batch of completions into delivery updates, endpoint health and disables, so both
 * stores apply the same rules.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Endpoint from "../Endpoint.ts"
import * as Outbox from "../Outbox.ts"
import * as Retry from "../Retry.ts"

/** @internal Columns are the same in both stores; numbers may come back as bigint (Postgres int8). */
type Num = number | bigint

/** @internal */
export interface EndpointRow {
  readonly id: string
  readonly url: string
  readonly event_types: string
  readonly keys: string
  readonly enabled: Num
  readonly disabled_reason: string | null
  readonly rate_limit: number | null
  readonly concurrency: Num
  readonly metadata: string
  readonly created_at: Num
  readonly updated_at: Num
  readonly failing_since: Num | null
  readonly last_success_at: Num | null
}

/** @internal */
export interface DeliveryRow {
  readonly message_id: string
  readonly endpoint_id: string
  readonly event_type: string
  readonly state: Outbox.DeliveryState
  readonly attempts: Num
  readonly next_at: Num
  readonly last_status: Num | null
  readonly last_error: string | null
  readonly created_at: Num
  readonly updated_at: Num
}

/** @internal */
export interface AttemptRow {
  readonly message_id: string
  readonly endpoint_id: string
  readonly attempt: Num
  readonly started_at: Num
  readonly duration_ms: Num
  readonly status: Num | null
  readonly response_body: string
  readonly error: string | null
  readonly result: Outbox.Attempt["result"]
}

/** @internal */
export interface MessageRow {
  readonly id: string
  readonly event_type: string
  readonly payload: string
  readonly idempotency_key: string | null
  readonly created_at: Num
}

const orNull = (value: Num | null | undefined): number | null =>
  value === null || value === undefined ? null : Number(value)

/** @internal */
export const decodeEndpoint = (row: EndpointRow): Endpoint.Endpoint => ({
  id: row.id,
  url: row.url,
  eventTypes: JSON.parse(row.event_types) as ReadonlyArray<string>,
  keys: Endpoint.decodeKeys(row.keys),
  enabled: Number(row.enabled) === 1,
  disabledReason: row.disabled_reason as Endpoint.DisabledReason | null,
  rateLimit: orNull(row.rate_limit),
  concurrency: Number(row.concurrency),
  metadata: JSON.parse(row.metadata) as Readonly<Record<string, string>>,
  createdAt: Number(row.created_at),
  updatedAt: Number(row.updated_at),
  failingSince: orNull(row.failing_since),
  lastSuccessAt: orNull(row.last_success_at)
})

/** @internal The columns of an endpoint write, in the order both stores' statements take them. */
export const endpointColumns = (endpoint: Endpoint.Endpoint) =>
  [
    endpoint.url,
    JSON.stringify(endpoint.eventTypes),
    Endpoint.encodeKeys(endpoint.keys),
    endpoint.enabled ? 1 : 0,
    endpoint.disabledReason,
    endpoint.rateLimit,
    endpoint.concurrency,
    JSON.stringify(endpoint.metadata),
    endpoint.createdAt,
    endpoint.updatedAt,
    endpoint.failingSince,
    endpoint.lastSuccessAt
  ] as const

/** @internal */
export const decodeDelivery = (row: DeliveryRow): Outbox.Delivery => ({
  messageId: row.message_id,
  endpointId: row.endpoint_id,
  eventType: row.event_type,
  state: row.state,
  attempts: Number(row.attempts),
  nextAt: row.state === "pending" ? Number(row.next_at) : null,
  lastStatus: orNull(row.last_status),
  lastError: row.last_error,
  createdAt: Number(row.created_at),
  updatedAt: Number(row.updated_at)
})

/** @internal */
export const decodeAttempt = (row: AttemptRow): Outbox.Attempt => ({
  messageId: row.message_id,
  endpointId: row.endpoint_id,
  attempt: Number(row.attempt),
  startedAt: Number(row.started_at),
  durationMs: Number(row.duration_ms),
  status: orNull(row.status),
  responseBody: row.response_body,
  error: row.error,
  result: row.result
})

/** @internal */
export const decodeMessage = (row: MessageRow): Outbox.Message => ({
  id: row.id,
  eventType: row.event_type,
  payload: row.payload,
  idempotencyKey: row.idempotency_key,
  createdAt: Number(row.created_at)
})

/** @internal The most bytes of a response body an attempt keeps. */
export const maxResponseBytes = 4096

/** @internal Clamps a query limit. */
export const queryLimit = (limit: number | undefined): number =>
  Math.max(1, Math.min(1000, Math.floor(limit ?? 100)))

/** @internal The delivery state a completion leads to, given whether its endpoint is still enabled. */
export const nextState = (
  next: Outbox.Completion["next"],
  endpointEnabled: boolean
): Outbox.DeliveryState => {
  switch (next._tag) {
    case "Delivered":
      return "delivered"
    case "Failed":
      return "failed"
    case "Disable":
      return "disabled"
    case "Retry":
      return endpointEnabled ? "pending" : "disabled"
  }
}

/** @internal What an attempt row says was decided. */
export const attemptResult = (state: Outbox.DeliveryState): Outbox.Attempt["result"] =>
  state === "pending" ? "retry" : state

/** @internal A wake-up: `wait` completes at the next `signal`. */
export const makeSignal = (): { readonly wait: Effect.Effect<void>; readonly signal: () => void } => {
  let current = Deferred.makeUnsafe<void>()
  return {
    wait: Effect.suspend(() => Deferred.await(current)),
    signal: () => {
      const fired = current
      current = Deferred.makeUnsafe<void>()
      Deferred.doneUnsafe(fired, Effect.void)
    }
  }
}

/** @internal An endpoint's state as `complete` needs it. */
export interface EndpointState {
  enabled: boolean
  health: Retry.Health
}

/** @internal One completion that applies, with what it does to its delivery. */
export interface AppliedCompletion {
  readonly completion: Outbox.Completion
  readonly index: number
  readonly state: Outbox.DeliveryState
  readonly nextAt: number
  readonly result: Outbox.Attempt["result"]
}

/** @internal What a batch of completions does, computed before anything is written. */
export interface Plan {
  readonly applied: ReadonlyArray<AppliedCompletion>
  /** The endpoints whose health changed, with their new health. */
  readonly health: ReadonlyMap<string, Retry.Health>
  readonly disable: ReadonlyArray<{ readonly endpointId: string; readonly reason: Endpoint.DisabledReason }>
  readonly events: ReadonlyArray<Outbox.Event>
}

/**
 * @internal Plans a batch: `current[i]` says whether completion `i` still holds its delivery's lease
 * (the others are stale and change nothing). Completions are folded in the order they ended, so a
 * 410 or the end of a failure run disables the endpoint for the completions after it: their
 * retries become `disabled` instead.
 */
export const planCompletions = (
  completions: ReadonlyArray<Outbox.Completion>,
  current: ReadonlyArray<boolean>,
  endpoints: ReadonlyMap<string, EndpointState>,
  disableAfter: number
): Plan => {
  const states = new Map<string, EndpointState>()
  for (const [id, state] of endpoints) states.set(id, { enabled: state.enabled, health: state.health })
  const applied: Array<AppliedCompletion> = []
  const health = new Map<string, Retry.Health>()
  const disable: Array<{ endpointId: string; reason: Endpoint.DisabledReason }> = []
  const events: Array<Outbox.Event> = []
  const order = completions
    .map((_, i) => i)
    .filter((i) => current[i] === true)
    .toSorted((a, b) => completions[a]!.endedAt - completions[b]!.endedAt)
  for (const index of order) {
    const completion = completions[index]!
    const { lease } = completion
    const endpoint = states.get(lease.endpointId) ?? { enabled: false, health: Retry.initialHealth }
    states.set(lease.endpointId, endpoint)
    const state = nextState(completion.next, endpoint.enabled)
    const nextAt = completion.next._tag === "Retry" ? completion.next.at : completion.endedAt
    applied.push({ completion, index, state, nextAt, result: attemptResult(state) })
    if (state === "failed") {
      events.push({
        _tag: "DeliveryFailed",
        messageId: lease.messageId,
        endpointId: lease.endpointId,
        at: completion.endedAt
      })
    }
    const folded = Retry.health(disableAfter, endpoint.health, { ok: completion.ok, at: completion.endedAt })
    endpoint.health = folded.health
    health.set(lease.endpointId, folded.health)
    const reason = completion.next._tag === "Disable" ? "gone" : folded.disable ? "failing" : undefined
    if (reason !== undefined && endpoint.enabled) {
      endpoint.enabled = false
      disable.push({ endpointId: lease.endpointId, reason })
      events.push({ _tag: "EndpointDisabled", endpointId: lease.endpointId, reason, at: completion.endedAt })
    }
  }
  return { applied, health, disable, events }
}

/** @internal A subscribers list, reloaded when the endpoint revision moves. */
export interface Subscriber {
  readonly id: string
  readonly eventTypes: ReadonlyArray<string>
}

/** @internal The endpoint ids subscribed to a type. */
export const subscribedTo = (subscribers: ReadonlyArray<Subscriber>, eventType: string): Array<string> =>
  subscribers.flatMap((s) => (Endpoint.subscribes(s.eventTypes, eventType) ? [s.id] : []))

interface Job<I, O> {
  readonly inputs: ReadonlyArray<I>
  readonly done: Deferred.Deferred<ReadonlyArray<O>, Outbox.StoreError>
}

/**
 * @internal Group commit: every submission waiting when the writer comes round is written by one
 * `write` (one transaction), so a busy application pays one commit (one fsync) per batch, not per
 * message. `write` returns one output per input, in order. When a batch fails, each submission is
 * written again on its own, so one bad message fails only its own caller. Submissions left when the
 * scope closes fail.
 */
export const groupCommit = <I, O>(
  write: (inputs: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, Outbox.StoreError>
): Effect.Effect<
  (inputs: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<O>, Outbox.StoreError>,
  never,
  Scope.Scope
> =>
  Effect.gen(function* () {
    const jobs = yield* Queue.unbounded<Job<I, O>>()
    const settle = (job: Job<I, O>, exit: Exit.Exit<ReadonlyArray<O>, Outbox.StoreError>) =>
      Deferred.doneUnsafe(job.done, exit)
    const writeBatch = (batch: ReadonlyArray<Job<I, O>>) =>
      Effect.flatMap(
        Effect.exit(write(batch.length === 1 ? batch[0]!.inputs : batch.flatMap((job) => job.inputs))),
        (exit) => {
          if (Exit.isSuccess(exit) || batch.length === 1) {
            let offset = 0
            for (const job of batch) {
              const size = job.inputs.length
              settle(
                job,
                Exit.map(exit, (outputs) => outputs.slice(offset, offset + size))
              )
              offset += size
            }
            return Effect.void
          }
          return Effect.forEach(
            batch,
            (job) => Effect.map(Effect.exit(write(job.inputs)), (one) => settle(job, one)),
            {
              discard: true
            }
          )
        }
      )
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.takeAll(jobs), writeBatch)))
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(Queue.clear(jobs), (left) =>
        Effect.sync(() => {
          const closed = Exit.fail(new Outbox.StoreError({ cause: new Error("the outbox store is closed") }))
          for (const job of left) settle(job, closed)
        })
      )
    )
    return (inputs) =>
      inputs.length === 0
        ? Effect.succeed([])
        : Effect.suspend(() => {
            const done = Deferred.makeUnsafe<ReadonlyArray<O>, Outbox.StoreError>()
            return Effect.andThen(Queue.offer(jobs, { inputs, done }), Deferred.await(done))
          })
  })

/** @internal Where a prune has got to: the last message it looked at, in (created_at, id) order. */
export interface PruneCursor {
  readonly createdAt: number
  readonly id: string
}

/** @internal One batch of a prune, as a store runs it in one transaction. */
export interface PruneStep {
  /** Messages recorded before this (epoch ms) may go: the cutoff, or the idempotency window's start. */
  readonly upTo: number
  /** Deliveries that ended at or after this keep their message. */
  readonly before: number
  readonly states: ReadonlyArray<Outbox.TerminalState>
  /** Look at the messages after this one. */
  readonly after: PruneCursor
  /** Look at this many. */
  readonly size: number
  /** Delete at most this many of them. */
  readonly take: number
}

/** @internal What a batch did. */
export interface PruneStepResult {
  readonly scanned: number
  readonly last: PruneCursor | undefined
  readonly pruned: Outbox.Pruned
}

const terminalStates: ReadonlyArray<Outbox.TerminalState> = ["delivered", "failed", "disabled"]

/**
 * @internal The prune both stores run: it walks the messages old enough to go, oldest first, one
 * batch (one transaction) at a time, yielding between batches so other work gets the store. Each
 * message is looked at once per call, so messages that must stay do not slow later batches.
 */
export const prune = (
  query: Outbox.PruneQuery,
  now: number,
  idempotencyWindow: number,
  step: (step: PruneStep) => Effect.Effect<PruneStepResult, Outbox.StoreError>
): Effect.Effect<Outbox.Pruned, Outbox.StoreError> => {
  const total = { messages: 0, deliveries: 0, attempts: 0 }
  const states = [...new Set(query.states ?? terminalStates)]
  for (const state of states) {
    if (!terminalStates.includes(state)) {
      return Effect.die(new Error(`Outbox.prune: ${JSON.stringify(state)} is not a terminal state`))
    }
  }
  const limit = query.limit === undefined ? Infinity : Math.floor(query.limit)
  const size = Math.max(1, Math.min(10_000, Math.floor(query.batchSize ?? 500)))
  // Times are whole milliseconds in the tables: rounding a cutoff up keeps "before" exact.
  const before = Math.ceil(Math.min(query.before, Number.MAX_SAFE_INTEGER))
  // Inside the idempotency window a message is what makes a repeated key or id a duplicate.
  const upTo = Math.min(before, Math.floor(now - idempotencyWindow) + 1)
  if (!(limit > 0) || !Number.isFinite(upTo)) return Effect.succeed(total)
  const loop = (after: PruneCursor): Effect.Effect<Outbox.Pruned, Outbox.StoreError> =>
    Effect.flatMap(
      step({ upTo, before, states, after, size, take: Math.min(size, limit - total.messages) }),
      ({ last, pruned, scanned }) => {
        total.messages += pruned.messages
        total.deliveries += pruned.deliveries
        total.attempts += pruned.attempts
        if (scanned < size || last === undefined || total.messages >= limit) return Effect.succeed(total)
        return Effect.andThen(Effect.yieldNow, loop(last))
      }
    )
  return loop({ createdAt: Number.MIN_SAFE_INTEGER, id: "" })
}
