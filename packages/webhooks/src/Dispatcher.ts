/**
 * The webhook dispatcher: worker loops, as a scoped layer, that lease due deliveries from the outbox,
 * sign them (Standard Webhooks: `webhook-id` is the message id on every attempt, `webhook-timestamp`
 * the time of each attempt), POST them through Effect's `HttpClient` with a timeout, never follow a
 * redirect, and record each attempt with the retry policy's decision.
 *
 * Each endpoint has its own concurrency limit, rate limit and local queue, and the dispatcher leases
 * per endpoint only what that endpoint can start soon, so a slow or failing endpoint never delays
 * another. An attempt starts only once the endpoint's earlier failures here are recorded and the
 * store confirms its lease and that the endpoint is still enabled, so nothing starts after the
 * failure that disables an endpoint. Provide the `HttpClient` with `Ssrf.layerHttpClient()` in
 * production. Closing the layer shuts down gracefully: no new leases, unstarted leases handed back,
 * attempts in flight given up to `shutdownTimeout`, their results recorded.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import type * as HttpClientResponse from "effect/http/HttpClientResponse"
import * as Endpoint from "./Endpoint.ts"
import * as Store from "./internal/store.ts"
import * as Outbox from "./Outbox.ts"
import * as Retry from "./Retry.ts"
import * as Signature from "./Signature.ts"

/**
 * Options of the dispatcher.
 *
 * @category models
 */
export interface Options {
  /** The retry policy (schedule, timeout, auto-disable period); default `Retry.defaultPolicy`. */
  readonly policy?: Retry.Policy | undefined
  /** This worker's name in leases; default a random `dsp_…`. */
  readonly owner?: string | undefined
  /** The most deliveries leased at once; default 256. */
  readonly batchSize?: number | undefined
  /** The longest wait between polls of the store when idle; default 1 second. */
  readonly pollInterval?: Duration.Input | undefined
  /**
   * How long a lease lasts; default two request timeouts and 30 seconds (time queued behind the
   * endpoint's limits, the request, a margin). Must exceed the timeout by more than a second: an
   * attempt only starts while it can end before its lease does.
   */
  readonly leaseDuration?: Duration.Input | undefined
  /** How long shutdown waits for attempts in flight; default one request timeout. */
  readonly shutdownTimeout?: Duration.Input | undefined
  /** How often deliveries stranded on disabled endpoints are ended; default 10 seconds. */
  readonly sweepInterval?: Duration.Input | undefined
  /**
   * Retention: after each sweep, prune the messages whose deliveries all ended longer ago than this,
   * with their deliveries and attempts (`Outbox.prune`, dead letters included). Default: never; keep
   * it longer than the span you may want to `recover`.
   */
  readonly retention?: Duration.Input | undefined
  /** The `user-agent` of every request; default `Strata-Webhooks/0.1`. */
  readonly userAgent?: string | undefined
  /**
   * How long a finished attempt may wait to be recorded with others in one transaction; default 5
   * milliseconds. 0 records each batch as soon as it is taken.
   */
  readonly recordDelay?: Duration.Input | undefined
  /**
   * Keep the Effect HTTP client's span per request; default false. Measured here, a span per request
   * costs about 40 µs of CPU — a fifth of a delivery — so turn it on when traces are exported.
   */
  readonly spans?: boolean | undefined
}

/**
 * Counters since the dispatcher started.
 *
 * @category models
 */
export interface Stats {
  readonly owner: string
  readonly leased: number
  /** Requests made (each ended in a response, a timeout or a transport error). */
  readonly attempts: number
  readonly delivered: number
  readonly retried: number
  readonly failed: number
  /** Attempts answered 410, and leases ended unattempted because their endpoint had been disabled. */
  readonly disabled: number
  /** Completions that did not apply because the lease had been lost and retaken. */
  readonly stale: number
  /** Leases handed back unattempted (too close to expiry, or shutdown). */
  readonly released: number
  readonly inFlight: number
}

/**
 * A running dispatcher.
 *
 * @category services
 */
export class Dispatcher extends Context.Service<
  Dispatcher,
  {
    readonly owner: string
    readonly stats: Effect.Effect<Stats>
  }
>()("@strata/webhooks/Dispatcher") {}

interface Runner {
  endpoint: Endpoint.Endpoint
  /** Leases taken and not yet finished (queued, waiting or in flight). */
  held: number
  /** The most leases held at once. */
  hold: number
  readonly permits: Semaphore.Semaphore
  /** Serializes the rate-limit wait so starts are spaced by at least 1 / rate. */
  readonly gate: Semaphore.Semaphore
  nextStart: number
  removed: boolean
}

interface Item {
  readonly lease: Outbox.Lease
  inFlight: boolean
  fiber: Fiber.Fiber<void> | undefined
}

/** An endpoint's failed attempts that ended here and are not recorded yet. */
interface Unrecorded {
  count: number
  /** Opened once they are all recorded. */
  readonly recorded: Latch.Latch
}

const defaultUserAgent = "Strata-Webhooks/0.1"

// An attempt starts only if it would end this long before its lease does.
const leaseMargin = 1000
const maxRecordBatch = 1024

/**
 * @internal Reads at most `limit` bytes of a body as UTF-8, cut on a character boundary. A body
 * whose declared length fits is read whole (the common, cheap case); any other is streamed and the
 * rest of it discarded.
 */
export const readBody = (
  response: HttpClientResponse.HttpClientResponse,
  limit: number
): Effect.Effect<string> => {
  // Read whole when it is known to be small: no body (204, 304) or a declared length that fits. (The
  // stream path aborts the request's signal when done, which costs a DOMException per request.)
  const declared = response.headers["content-length"]
  if (
    response.status === 204 ||
    response.status === 304 ||
    (declared !== undefined && /^[0-9]{1,10}$/.test(declared) && Number(declared) <= limit)
  ) {
    return Effect.orElseSucceed(response.text, () => "")
  }
  return Effect.suspend(() => {
    const decoder = new TextDecoder("utf-8")
    let text = ""
    let size = 0
    return Stream.runForEachWhile(response.stream, (chunk) =>
      Effect.sync(() => {
        const take = chunk.subarray(0, limit - size)
        size += take.length
        // `stream: true` holds back a trailing partial character, so a cut never leaves half of one.
        text += decoder.decode(take, { stream: true })
        return size < limit
      })
    ).pipe(
      Effect.map(() => (size < limit ? text + decoder.decode() : text)),
      // A body that breaks off halfway is still worth its first bytes in the log.
      Effect.orElseSucceed(() => text)
    )
  })
}

/**
 * How many leases an endpoint may hold at once: two rounds of its concurrency, or, when rate-limited,
 * no more than it can start within one request timeout — so a held lease is attempted well before it
 * expires.
 *
 * @internal
 */
export const holdOf = (endpoint: Endpoint.Endpoint, timeoutMillis: number): number =>
  endpoint.rateLimit === null
    ? 2 * endpoint.concurrency
    : Math.max(1, Math.min(2 * endpoint.concurrency, Math.floor((endpoint.rateLimit * timeoutMillis) / 1000)))

/**
 * Makes a dispatcher in the current scope.
 *
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Dispatcher["Service"], never, Outbox.Store | HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function* () {
    const store = yield* Outbox.Store
    const baseClient = yield* HttpClient.HttpClient
    const policy = options.policy ?? Retry.defaultPolicy
    const timeoutMillis = Duration.toMillis(policy.timeout)
    const disableAfter = Duration.toMillis(policy.disableAfter)
    const leaseMillis = Duration.toMillis(
      options.leaseDuration ?? Duration.millis(2 * timeoutMillis + 30_000)
    )
    if (!(leaseMillis > timeoutMillis + leaseMargin)) {
      return yield* Effect.die(
        new Error(
          `Dispatcher: leaseDuration (${leaseMillis} ms) must exceed the timeout by more than ${leaseMargin} ms`
        )
      )
    }
    const batchSize = Math.max(1, options.batchSize ?? 256)
    const pollInterval = Duration.toMillis(options.pollInterval ?? "1 second")
    const shutdownTimeout = options.shutdownTimeout ?? policy.timeout
    const sweepInterval = options.sweepInterval ?? "10 seconds"
    const retention = options.retention === undefined ? undefined : Duration.toMillis(options.retention)
    if (retention !== undefined && !(retention > 0)) {
      return yield* Effect.die(new Error(`Dispatcher: retention must be positive, got ${retention} ms`))
    }
    const userAgent = options.userAgent ?? defaultUserAgent
    const recordDelay = Duration.toMillis(options.recordDelay ?? "5 millis")
    const spans = options.spans ?? false
    const owner = options.owner ?? Endpoint.makeId("dsp")

    // Never follow a redirect, whatever the client: fetch-based clients are told so; the others
    // (undici, node:http) do not follow by themselves. No trace headers leak to third parties.
    const requestInit = yield* Effect.serviceOption(FetchHttpClient.RequestInit)
    const withClientSettings = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(
        Effect.provideService(FetchHttpClient.RequestInit, {
          ...Option.getOrElse(requestInit, () => ({})),
          redirect: "manual"
        }),
        Effect.provideService(HttpClient.TracerPropagationEnabled, false),
        (self) => (spans ? self : Effect.provideService(self, HttpClient.TracerDisabledWhen, () => true))
      )

    const counters = {
      leased: 0,
      attempts: 0,
      delivered: 0,
      retried: 0,
      failed: 0,
      disabled: 0,
      stale: 0,
      released: 0
    }
    const runners = new Map<string, Runner>()
    const items = new Map<string, Item>()
    const completions = yield* Queue.unbounded<Outbox.Completion>()
    const capacityFreed = Store.makeSignal()
    // Whether a failure disables its endpoint (the end of a failure run) is only decided when the
    // store records it, which may be a while after it ended (`recordDelay`, the write). An attempt of
    // the same endpoint starting in between would start after the disable. So, per endpoint, the
    // failures not recorded yet hold back the next start until they are; while a start waits, the
    // recorder writes at once instead of waiting `recordDelay` for more to join.
    const unrecorded = new Map<string, Unrecorded>()
    let awaitingRecord = 0
    const hurry = Store.makeSignal()
    const holdBack = (completion: Outbox.Completion) => {
      if (completion.ok) return
      const id = completion.lease.endpointId
      const entry = unrecorded.get(id)
      if (entry !== undefined) entry.count++
      else unrecorded.set(id, { count: 1, recorded: Latch.makeUnsafe(false) })
    }
    const recorded = (batch: ReadonlyArray<Outbox.Completion>) => {
      for (const completion of batch) {
        if (completion.ok) continue
        const id = completion.lease.endpointId
        const entry = unrecorded.get(id)
        if (entry === undefined || --entry.count > 0) continue
        unrecorded.delete(id)
        entry.recorded.openUnsafe()
      }
    }

    let stopping = false
    let revision = -1
    let rotation = 0

    // ------------------------------------------------------------------------------------------
    // Endpoints
    // ------------------------------------------------------------------------------------------

    const refresh = Effect.gen(function* () {
      const current = yield* store.endpoints.revision
      if (current === revision) return
      const list = yield* store.endpoints.list
      const seen = new Set<string>()
      for (const endpoint of list) {
        seen.add(endpoint.id)
        const runner = runners.get(endpoint.id)
        if (runner === undefined) {
          runners.set(endpoint.id, {
            endpoint,
            held: 0,
            hold: holdOf(endpoint, timeoutMillis),
            permits: yield* Semaphore.make(endpoint.concurrency),
            gate: yield* Semaphore.make(1),
            nextStart: 0,
            removed: false
          })
        } else {
          if (runner.endpoint.concurrency !== endpoint.concurrency)
            yield* runner.permits.resize(endpoint.concurrency)
          runner.endpoint = endpoint
          runner.hold = holdOf(endpoint, timeoutMillis)
          runner.removed = false
        }
      }
      for (const [id, runner] of runners) {
        if (seen.has(id)) continue
        runner.removed = true
        if (runner.held === 0) runners.delete(id)
      }
      revision = current
    })

    // ------------------------------------------------------------------------------------------
    // One attempt
    // ------------------------------------------------------------------------------------------

    const post = (
      endpoint: Endpoint.Endpoint,
      lease: Outbox.Lease,
      startedAt: number
    ): Effect.Effect<{ readonly outcome: Retry.Outcome; readonly body: string }> => {
      const secrets = Endpoint.activeSecrets(endpoint.keys, startedAt)
      if (secrets.length === 0) {
        return Effect.succeed({
          outcome: { _tag: "TransportError", message: "the endpoint has no active signing key" },
          body: ""
        })
      }
      const headers = Signature.sign(
        { id: lease.messageId, timestamp: Math.floor(startedAt / 1000), payload: lease.payload },
        secrets
      )
      const request = HttpClientRequest.post(endpoint.url).pipe(
        HttpClientRequest.setHeaders({ ...headers, "user-agent": userAgent }),
        HttpClientRequest.bodyText(lease.payload, "application/json")
      )
      return baseClient.execute(request).pipe(
        Effect.flatMap((response) =>
          Effect.map(readBody(response, Store.maxResponseBytes), (body) => ({
            outcome: {
              _tag: "Response" as const,
              status: response.status,
              retryAfter: response.headers["retry-after"]
            },
            body
          }))
        ),
        Effect.timeoutOption(policy.timeout),
        Effect.map(Option.getOrElse(() => ({ outcome: { _tag: "Timeout" } as Retry.Outcome, body: "" }))),
        Effect.catch((error) =>
          Effect.succeed({
            outcome: { _tag: "TransportError" as const, message: errorMessage(error) },
            body: ""
          })
        )
      )
    }

    const release = (leases: ReadonlyArray<Outbox.Lease>) =>
      Effect.andThen(
        Effect.sync(() => {
          counters.released += leases.length
        }),
        Effect.ignore(store.release(leases), {
          log: "Warn",
          message: "Dispatcher: handing leases back failed"
        })
      )

    // Whether a lease may be attempted now: once no failure of its endpoint is waiting to be recorded
    // and the endpoint's rate allows a start, the store is asked whether the lease still holds and the
    // endpoint is still enabled (it ends the delivery itself when the endpoint is disabled). Returns
    // the attempt's start time, or undefined when it must not start.
    const admit = (runner: Runner, item: Item): Effect.Effect<number | undefined> =>
      Effect.gen(function* () {
        const { lease } = item
        for (;;) {
          // Shutdown began while this one waited: the finalizer hands its lease back.
          if (stopping) return undefined
          const pending = unrecorded.get(lease.endpointId)
          if (pending !== undefined) {
            awaitingRecord++
            hurry.signal()
            yield* Effect.ensuring(
              pending.recorded.await,
              Effect.sync(() => {
                awaitingRecord--
              })
            )
            continue
          }
          const now = yield* Clock.currentTimeMillis
          if (runner.endpoint.rateLimit !== null && runner.nextStart > now) {
            yield* Effect.sleep(Math.ceil(runner.nextStart - now))
            continue
          }
          const verdict = yield* store.start([lease]).pipe(
            Effect.map((verdicts) => verdicts[0] ?? "lost"),
            Effect.catch((error) =>
              Effect.as(
                Effect.logWarning(
                  "Dispatcher: checking a lease before its attempt failed; handing it back",
                  error
                ),
                "unchecked" as const
              )
            )
          )
          if (verdict === "disabled") counters.disabled++
          // Ended by the store (disabled) or no longer ours (lost): nothing to do. Unchecked: not
          // attempted without the store's word that the endpoint is enabled.
          if (verdict !== "attempt") {
            if (verdict === "unchecked") yield* release([lease])
            return undefined
          }
          // From the checks to the flag in one synchronous step, so nothing can come in between: not
          // shutdown, not another start (the rate), not the end of a failure of this endpoint (one
          // that ended while the store was asked sends this round back to wait for its record).
          const start = yield* Clock.clockWith((clock) =>
            Effect.sync(() => {
              if (stopping) return "stop" as const
              const at = clock.currentTimeMillisUnsafe()
              const rate = runner.endpoint.rateLimit
              if (unrecorded.has(lease.endpointId) || (rate !== null && runner.nextStart > at))
                return "again" as const
              // Found gone (410) here though the store does not say so (recording it failed): send
              // nothing more. And the request must end before the lease does, or another worker
              // could attempt it too.
              if (!runner.endpoint.enabled || at + timeoutMillis + leaseMargin > lease.leaseUntil)
                return "release" as const
              // Spaced from the time the start actually happens, so a late wake-up cannot bunch two.
              if (rate !== null) runner.nextStart = at + 1000 / rate
              item.inFlight = true
              return at
            })
          )
          if (start === "again") continue
          if (start === "release") yield* release([lease])
          return typeof start === "number" ? start : undefined
        }
      })

    const runItem = (runner: Runner, item: Item): Effect.Effect<void> =>
      runner.permits
        .withPermits(1)(
          Effect.gen(function* () {
            // Rate-limited starts queue up one at a time, each spaced from the one before.
            const startedAt = yield* runner.endpoint.rateLimit === null
              ? admit(runner, item)
              : runner.gate.withPermits(1)(admit(runner, item))
            if (startedAt === undefined) return
            const { lease } = item
            const endpoint = runner.endpoint
            const { body, outcome } = yield* post(endpoint, lease, startedAt)
            const random = yield* Random.next
            // Read, decided and queued in one synchronous step, so a start of the same endpoint
            // either comes before this end or sees the failure waiting to be recorded.
            yield* Clock.clockWith((clock) =>
              Effect.sync(() => {
                const endedAt = clock.currentTimeMillisUnsafe()
                counters.attempts++
                const decision = Retry.decide(policy, {
                  attempt: lease.attempt,
                  outcome,
                  random,
                  now: endedAt,
                  manual: lease.manual
                })
                if (decision._tag === "Disable") runner.endpoint = { ...runner.endpoint, enabled: false }
                const completion: Outbox.Completion = {
                  lease,
                  startedAt,
                  endedAt,
                  status: outcome._tag === "Response" ? outcome.status : null,
                  responseBody: body,
                  error:
                    outcome._tag === "Timeout"
                      ? `timed out after ${timeoutMillis} ms`
                      : outcome._tag === "TransportError"
                        ? outcome.message
                        : null,
                  ok: Retry.classify(outcome) === "success",
                  next: decision._tag === "Retry" ? { _tag: "Retry", at: endedAt + decision.delay } : decision
                }
                holdBack(completion)
                Queue.offerUnsafe(completions, completion)
              })
            )
          })
        )
        .pipe(
          Effect.ensuring(
            Effect.sync(() => {
              items.delete(keyOf(item.lease))
              runner.held--
              if (runner.removed && runner.held === 0) runners.delete(runner.endpoint.id)
              // Wake the poller when an endpoint has room for a useful batch again (or is idle).
              if (runner.held === 0 || runner.hold - runner.held === Math.ceil(runner.hold / 2))
                capacityFreed.signal()
            })
          )
        )

    // ------------------------------------------------------------------------------------------
    // Loops
    // ------------------------------------------------------------------------------------------

    const leaseOnce = Effect.gen(function* () {
      yield* refresh
      const free: Array<readonly [string, number]> = []
      for (const runner of runners.values()) {
        const room = runner.hold - runner.held
        if (runner.endpoint.enabled && !runner.removed && room > 0) free.push([runner.endpoint.id, room])
      }
      if (free.length === 0) return 0
      // A different endpoint goes first each time, so the batch limit favours no one.
      rotation = (rotation + 1) % free.length
      const capacity = [...free.slice(rotation), ...free.slice(0, rotation)]
      const leases = yield* store.lease({ owner, leaseMillis, capacity, limit: batchSize })
      counters.leased += leases.length
      for (const lease of leases) {
        const runner = runners.get(lease.endpointId)
        if (runner === undefined) continue
        runner.held++
        const item: Item = { lease, inFlight: false, fiber: undefined }
        items.set(keyOf(lease), item)
        item.fiber = yield* Effect.forkDetach(runItem(runner, item))
      }
      return leases.length
    })

    const idleWait = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const due = yield* store.nextDue
      const wait = Option.match(due, {
        onNone: () => pollInterval,
        // Due now but nothing was leased: every endpoint with work is full; wait for room.
        onSome: (at) => (at <= now ? pollInterval : Math.min(pollInterval, at - now))
      })
      yield* Effect.raceAll([Effect.sleep(Duration.millis(wait)), store.changed, capacityFreed.wait])
    })

    const poll = Effect.forever(
      leaseOnce.pipe(
        Effect.flatMap((leased) => (leased >= batchSize ? Effect.yieldNow : idleWait)),
        Effect.catchCause((cause) =>
          Effect.andThen(
            Effect.logWarning("Dispatcher: polling the outbox failed; retrying", cause),
            Effect.sleep(Duration.millis(pollInterval))
          )
        )
      )
    )

    const flush = (batch: ReadonlyArray<Outbox.Completion>) =>
      store.complete(batch, { disableAfter }).pipe(
        Effect.tap((applied) =>
          Effect.sync(() => {
            // Retries were just scheduled: the poller may be asleep until a later time.
            capacityFreed.signal()
            batch.forEach((completion, i) => {
              if (!applied[i]) counters.stale++
              else if (completion.next._tag === "Delivered") counters.delivered++
              else if (completion.next._tag === "Retry") counters.retried++
              else if (completion.next._tag === "Failed") counters.failed++
              else counters.disabled++
            })
          })
        ),
        // A lost write only means the attempt is made again when its lease expires.
        Effect.ignore({
          log: "Warn",
          message: "Dispatcher: recording attempts failed; they will be retried"
        }),
        // Recorded or not, they no longer hold back starts: the store answers for the endpoint now.
        Effect.ensuring(Effect.sync(() => recorded(batch)))
      )

    // Attempts are recorded in batches: the first completion waits `recordDelay` for others to join
    // it, so a busy dispatcher writes one transaction per many attempts rather than one each.
    // Taken from the queue and not yet recorded: if shutdown interrupts the wait, it records these.
    let taken: ReadonlyArray<Outbox.Completion> = []
    const complete = Effect.forever(
      Effect.gen(function* () {
        taken = yield* Queue.takeBetween(completions, 1, maxRecordBatch)
        if (taken.length < maxRecordBatch && recordDelay > 0 && awaitingRecord === 0) {
          yield* Effect.raceAll([Effect.sleep(recordDelay), hurry.wait])
          const more = yield* Queue.takeBetween(completions, 0, maxRecordBatch - taken.length)
          if (more.length > 0) taken = [...taken, ...more]
        }
        yield* Effect.uninterruptible(
          Effect.andThen(
            flush(taken),
            Effect.sync(() => {
              taken = []
            })
          )
        )
      })
    )

    // Every dispatcher on a database prunes: batches are short transactions, and two prunes of the
    // same rows only split the work.
    const pruneOld =
      retention === undefined || retention === Infinity
        ? Effect.void
        : Effect.ignore(
            Effect.flatMap(Clock.currentTimeMillis, (now) => store.prune({ before: now - retention })),
            { log: "Warn", message: "Dispatcher: pruning old messages failed" }
          )
    const sweep = Effect.forever(
      Effect.andThen(
        Effect.sleep(sweepInterval),
        Effect.andThen(
          Effect.ignore(store.sweep, {
            log: "Warn",
            message: "Dispatcher: sweeping disabled endpoints failed"
          }),
          pruneOld
        )
      )
    )

    // Attempts are forked from the poller and inherit its client settings.
    const pollFiber = yield* Effect.forkDetach(withClientSettings(poll))
    const completeFiber = yield* Effect.forkDetach(complete)
    const sweepFiber = yield* Effect.forkDetach(sweep)

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        // Taken in one synchronous step with the flag: nothing waiting can start a request after it.
        stopping = true
        const waiting = [...items.values()].filter((item) => !item.inFlight)
        const inFlight = [...items.values()].flatMap((item) =>
          item.inFlight && item.fiber !== undefined ? [item.fiber] : []
        )
        yield* Fiber.interruptAll([pollFiber, sweepFiber])
        yield* Fiber.interruptAll(waiting.flatMap((item) => (item.fiber === undefined ? [] : [item.fiber])))
        yield* release(waiting.map((item) => item.lease))
        yield* Effect.timeoutOption(Fiber.awaitAll(inFlight), shutdownTimeout)
        // Still running past the deadline: dropped unrecorded; their leases expire and they are retried.
        yield* Fiber.interruptAll(inFlight)
        yield* Fiber.interrupt(completeFiber)
        const left = [...taken, ...(yield* Queue.clear(completions))]
        if (left.length > 0) yield* flush(left)
      })
    )

    return Dispatcher.of({
      owner,
      stats: Effect.sync(() => ({
        owner,
        ...counters,
        inFlight: [...items.values()].filter((i) => i.inFlight).length
      }))
    })
  })

/**
 * The dispatcher as a scoped layer: it runs while the layer is alive and shuts down gracefully with it.
 *
 * @example
 * ```ts
 * const Webhooks = Dispatcher.layer({ policy: Retry.make({ timeout: "10 seconds" }) }).pipe(
 *   Layer.provideMerge(OutboxSqlite.layer({ filename: "webhooks.db" })),
 *   Layer.provide(Ssrf.layerHttpClient())
 * )
 * ```
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<Dispatcher, never, Outbox.Store | HttpClient.HttpClient> =>
  Layer.effect(Dispatcher)(make(options))

const keyOf = (lease: Outbox.Lease) => `${lease.messageId}\u0000${lease.endpointId}`

// The error and its causes (an HttpClientError wraps the socket's error, which says what happened:
// ECONNREFUSED, a TLS failure, the SSRF guard's refusal), cut to a size worth keeping per attempt.
const errorMessage = (error: unknown): string => {
  const parts: Array<string> = []
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const message =
      typeof e === "object" && "message" in e && typeof e.message === "string" ? e.message : String(e)
    if (message !== "" && !parts.includes(message)) parts.push(message)
    e = typeof e === "object" && "cause" in e ? e.cause : undefined
  }
  const text = parts.join(": ")
  return text.length > 1000 ? `${text.slice(0, 1000)}…` : text
}
