/**
 * The retry policy of webhook deliveries: which outcomes end a delivery, how long to wait before the
 * next attempt, and when an endpoint that keeps failing is disabled.
 *
 * Every decision is a pure function of (policy, attempt number, outcome, a random number in [0, 1),
 * now), so it can be property-tested; `schedule` turns it into an Effect `Schedule` for code that
 * retries in memory, and the dispatcher applies the same function to attempts it persists.
 *
 * Defaults (Svix's): an immediate attempt, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, each ±20%
 * jitter; 2xx is a success; 3xx is a failure and is never followed; 410 disables the endpoint; 429,
 * 502, 503, 504 and timeouts wait at least 60 s and honour `Retry-After` (seconds or HTTP-date) within
 * [base, 2·base]; no delay exceeds `maxDelay` (24 h), after jitter included; requests time out after
 * 15 s; an endpoint failing without a single success for 5 days is disabled.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"

// ---------------------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------------------

/**
 * A retry policy. All durations are whole milliseconds once made (`make` rounds them).
 *
 * @category models
 */
export interface Policy {
  /** Delays before each retry; the first attempt is immediate, so there are at most `1 + length` attempts. */
  readonly schedule: ReadonlyArray<Duration.Duration>
  /** Relative jitter in [0, 1): a delay `s` becomes a uniform draw in `[s·(1 − jitter), s·(1 + jitter)]`. */
  readonly jitter: number
  /** The least base delay after an overload answer (429, 502, 503, 504) or a timeout. */
  readonly overloadFloor: Duration.Duration
  /** No delay is ever longer, after `Retry-After` and jitter: the cap wins over every other rule. */
  readonly maxDelay: Duration.Duration
  /** How long one request may take, response body included. */
  readonly timeout: Duration.Duration
  /** An endpoint that has only failed for this long (any success resets the clock) is disabled. */
  readonly disableAfter: Duration.Duration
}

/**
 * Options of `make`; every field has the default of `defaultPolicy`.
 *
 * @category models
 */
export interface Options {
  readonly schedule?: ReadonlyArray<Duration.Input> | undefined
  readonly jitter?: number | undefined
  readonly overloadFloor?: Duration.Input | undefined
  readonly maxDelay?: Duration.Input | undefined
  readonly timeout?: Duration.Input | undefined
  readonly disableAfter?: Duration.Input | undefined
}

const wholeMillis = (input: Duration.Input, what: string): Duration.Duration => {
  const millis = Duration.toMillis(input)
  if (!Number.isFinite(millis) || millis < 0)
    throw new Error(`Retry: ${what} must be a finite, non-negative duration`)
  return Duration.millis(Math.round(millis))
}

/**
 * The default schedule after the immediate first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
 *
 * @category constants
 */
export const defaultSchedule: ReadonlyArray<Duration.Duration> = [
  Duration.seconds(5),
  Duration.minutes(5),
  Duration.minutes(30),
  Duration.hours(2),
  Duration.hours(5),
  Duration.hours(10),
  Duration.hours(10)
]

/**
 * Makes a policy; omitted fields take the defaults. Throws on a negative or infinite duration or a
 * jitter outside [0, 1), so a bad configuration fails at startup.
 *
 * @example
 * ```ts
 * const policy = Retry.make({ schedule: ["1 second", "1 minute"], timeout: "5 seconds" })
 * ```
 * @category constructors
 */
export const make = (options: Options = {}): Policy => {
  const jitter = options.jitter ?? 0.2
  if (!(jitter >= 0 && jitter < 1)) throw new Error("Retry: jitter must be in [0, 1)")
  const timeout = wholeMillis(options.timeout ?? "15 seconds", "timeout")
  if (Duration.toMillis(timeout) === 0) throw new Error("Retry: timeout must be positive")
  return {
    schedule: (options.schedule ?? defaultSchedule).map((step, i) => wholeMillis(step, `schedule[${i}]`)),
    jitter,
    overloadFloor: wholeMillis(options.overloadFloor ?? "60 seconds", "overloadFloor"),
    maxDelay: wholeMillis(options.maxDelay ?? "24 hours", "maxDelay"),
    timeout,
    disableAfter: wholeMillis(options.disableAfter ?? "5 days", "disableAfter")
  }
}

/**
 * The default policy.
 *
 * @category constants
 */
export const defaultPolicy: Policy = make()

/**
 * The most attempts a delivery gets in one round: the immediate one plus one per schedule step.
 *
 * @category getters
 */
export const maxAttempts = (policy: Policy): number => 1 + policy.schedule.length

// ---------------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------------

/**
 * What one attempt produced: a response (any status), a timeout, or a failure to get any response
 * (refused connection, DNS, TLS, an address the SSRF guard refused).
 *
 * @category models
 */
export type Outcome =
  | { readonly _tag: "Response"; readonly status: number; readonly retryAfter?: string | undefined }
  | { readonly _tag: "Timeout" }
  | { readonly _tag: "TransportError"; readonly message: string }

/**
 * What an outcome means for the delivery: `success` (2xx), `gone` (410: disable the endpoint),
 * `overload` (429, 502, 503, 504 or a timeout: back off harder) or `failure` (everything else, 3xx
 * included).
 *
 * @category models
 */
export type Class = "success" | "gone" | "overload" | "failure"

const overloadStatuses: ReadonlySet<number> = new Set([429, 502, 503, 504])

/**
 * Classifies an outcome.
 *
 * @category classification
 */
export const classify = (outcome: Outcome): Class => {
  switch (outcome._tag) {
    case "Timeout":
      return "overload"
    case "TransportError":
      return "failure"
    case "Response":
      if (outcome.status >= 200 && outcome.status <= 299) return "success"
      if (outcome.status === 410) return "gone"
      return overloadStatuses.has(outcome.status) ? "overload" : "failure"
  }
}

// ---------------------------------------------------------------------------------------------------
// Retry-After
// ---------------------------------------------------------------------------------------------------

const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
const day = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
const longDay = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
const month = `(${months.join("|")})`
const time = "(\\d{2}):(\\d{2}):(\\d{2})"
// RFC 9110 §5.6.7: recipients accept IMF-fixdate and the two obsolete forms.
const imfFixdate = new RegExp(`^${day}, (\\d{2}) ${month} (\\d{4}) ${time} GMT$`)
const rfc850 = new RegExp(`^${longDay}, (\\d{2})-${month}-(\\d{2}) ${time} GMT$`)
const asctime = new RegExp(`^${day} ${month} ([ \\d]\\d) ${time} (\\d{4})$`)

const utc = (
  year: number,
  monthName: string,
  dayOfMonth: number,
  hour: number,
  minute: number,
  second: number
): number | undefined => {
  const monthIndex = months.indexOf(monthName)
  if (monthIndex < 0 || hour > 23 || minute > 59 || second > 60 || dayOfMonth < 1) return undefined
  const millis = Date.UTC(year, monthIndex, dayOfMonth, hour, minute, Math.min(second, 59))
  // Date.UTC rolls 31 Feb over into March; a date that does not exist is garbage.
  return new Date(millis).getUTCDate() === dayOfMonth ? millis : undefined
}

/**
 * Parses an HTTP-date (IMF-fixdate, RFC 850 or asctime form) to epoch milliseconds, or `undefined`.
 * `now` places an RFC 850 two-digit year: more than 50 years ahead of it is the century before.
 *
 * @category parsing
 */
export const parseHttpDate = (text: string, now: number = Date.now()): number | undefined => {
  let m = imfFixdate.exec(text)
  if (m !== null) return utc(Number(m[3]), m[2]!, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]))
  m = rfc850.exec(text)
  if (m !== null) {
    // RFC 9110: a two-digit year more than 50 years in the future is in the past century.
    const yy = Number(m[3])
    const thisYear = new Date(now).getUTCFullYear()
    let year = Math.floor(thisYear / 100) * 100 + yy
    if (year > thisYear + 50) year -= 100
    return utc(year, m[2]!, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]))
  }
  m = asctime.exec(text)
  if (m !== null)
    return utc(Number(m[6]), m[1]!, Number(m[2]!.trim()), Number(m[3]), Number(m[4]), Number(m[5]))
  return undefined
}

const delaySeconds = /^[0-9]{1,12}$/

/**
 * How long a `Retry-After` value asks to wait, in milliseconds from `now`: delay-seconds or an
 * HTTP-date (a date in the past is 0). Anything else — negative or fractional numbers, other date
 * formats, text — is `undefined`, so garbage is ignored rather than trusted.
 *
 * @category parsing
 */
export const parseRetryAfter = (value: string | undefined, now: number): number | undefined => {
  if (value === undefined) return undefined
  const text = value.trim()
  if (delaySeconds.test(text)) return Number(text) * 1000
  const date = parseHttpDate(text, now)
  return date === undefined ? undefined : Math.max(0, date - now)
}

// ---------------------------------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------------------------------

/**
 * What happens to a delivery after an attempt.
 *
 * - `Delivered`: a 2xx; no more attempts.
 * - `Retry`: another attempt after `delay` milliseconds (`overload` tells whether the floor applied).
 * - `Failed`: the schedule is spent (or a manual attempt failed): the delivery is dead-lettered.
 * - `Disable`: a 410; the endpoint is disabled and the delivery ends with it.
 *
 * @category models
 */
export type Decision =
  | { readonly _tag: "Delivered" }
  | { readonly _tag: "Retry"; readonly delay: number; readonly overload: boolean }
  | { readonly _tag: "Failed" }
  | { readonly _tag: "Disable" }

/**
 * The input of `decide`.
 *
 * @category models
 */
export interface Step {
  /** The 1-based number of the attempt that just ended, counted in the current round. */
  readonly attempt: number
  readonly outcome: Outcome
  /** A uniform draw in [0, 1) for the jitter. */
  readonly random: number
  /** Epoch milliseconds when the attempt ended (an HTTP-date `Retry-After` is relative to it). */
  readonly now: number
  /** A manual retry is one attempt: it is never rescheduled. */
  readonly manual?: boolean | undefined
}

/**
 * The delay before the retry that follows attempt `step.attempt` (which must have a schedule step
 * after it): the step's base, raised to the overload floor for overload outcomes and then to the
 * `Retry-After` value clamped into [base, 2·base], jittered by ±`jitter`, then capped by `maxDelay`.
 * Whole milliseconds; as the base is whole, the jittered value stays inside the exact envelope.
 *
 * @category decisions
 */
export const retryDelay = (policy: Policy, step: Omit<Step, "manual">): number => {
  const scheduled = policy.schedule[step.attempt - 1]
  if (scheduled === undefined)
    throw new RangeError(`Retry: attempt ${step.attempt} has no schedule step after it`)
  let base = Duration.toMillis(scheduled)
  if (classify(step.outcome) === "overload") {
    base = Math.max(base, Duration.toMillis(policy.overloadFloor))
    const asked =
      step.outcome._tag === "Response" ? parseRetryAfter(step.outcome.retryAfter, step.now) : undefined
    if (asked !== undefined) base = Math.min(Math.max(asked, base), 2 * base)
  }
  const low = base * (1 - policy.jitter)
  const high = base * (1 + policy.jitter)
  const jittered = Math.min(
    Math.max(Math.round(low + (high - low) * step.random), Math.ceil(low)),
    Math.floor(high)
  )
  return Math.min(jittered, Duration.toMillis(policy.maxDelay))
}

/**
 * Decides what follows an attempt: 2xx delivers, 410 disables, a manual attempt or the last attempt
 * of the schedule that failed dead-letters, anything else retries after `retryDelay`.
 *
 * @example
 * ```ts
 * Retry.decide(Retry.defaultPolicy, {
 *   attempt: 1,
 *   outcome: { _tag: "Response", status: 503, retryAfter: "120" },
 *   random: 0.5,
 *   now: Date.now()
 * }) // { _tag: "Retry", delay: 120_000, overload: true }
 * ```
 * @category decisions
 */
export const decide = (policy: Policy, step: Step): Decision => {
  const kind = classify(step.outcome)
  if (kind === "success") return delivered
  if (kind === "gone") return disable
  if (step.manual === true || step.attempt > policy.schedule.length) return failed
  return { _tag: "Retry", delay: retryDelay(policy, step), overload: kind === "overload" }
}

const delivered: Decision = { _tag: "Delivered" }
const failed: Decision = { _tag: "Failed" }
const disable: Decision = { _tag: "Disable" }

/**
 * The policy as an Effect `Schedule` over attempt outcomes: each step reads the outcome of the attempt
 * that just ended, draws the jitter from Effect's `Random`, and either waits `retryDelay` (output: the
 * `Retry` decision) or ends with the terminal decision as its done value. Use it to retry one delivery
 * in memory with `Effect.repeat`; the durable dispatcher applies `decide` to persisted attempts instead,
 * so both follow the same rules.
 *
 * @example
 * ```ts
 * const attempt: Effect.Effect<Retry.Outcome> = post(request)
 * const last = yield* Effect.repeat(attempt, Retry.schedule(Retry.defaultPolicy))
 * ```
 * @category schedules
 */
export const schedule = (policy: Policy): Schedule.Schedule<Decision, Outcome> =>
  Schedule.fromStepWithMetadata(
    Effect.succeed((meta: Schedule.InputMetadata<Outcome>) =>
      Effect.flatMap(Random.next, (random) => {
        const decision = decide(policy, { attempt: meta.attempt, outcome: meta.input, random, now: meta.now })
        return decision._tag === "Retry"
          ? Effect.succeed([decision, Duration.millis(decision.delay)] as [Decision, Duration.Duration])
          : Cause.done(decision)
      })
    )
  )

// ---------------------------------------------------------------------------------------------------
// Endpoint health
// ---------------------------------------------------------------------------------------------------

/**
 * How an endpoint has been doing, as persisted: when its current run of failures began (`null` when
 * the latest attempt succeeded) and when it last succeeded.
 *
 * @category models
 */
export interface Health {
  readonly failingSince: number | null
  readonly lastSuccessAt: number | null
}

/**
 * Folds one attempt (`ok`: a 2xx) at time `at` into an endpoint's health. `disable` is true when the
 * endpoint has now failed continuously for at least `disableAfter` (the policy's, usually). Attempts may be folded
 * slightly out of order (concurrent workers): a failure older than the last success does not start a
 * run of failures, and a success does not erase a run that began after it.
 *
 * @category health
 */
export const health = (
  disableAfter: Duration.Input,
  current: Health,
  attempt: { readonly ok: boolean; readonly at: number }
): { readonly health: Health; readonly disable: boolean } => {
  const { at } = attempt
  if (attempt.ok) {
    return {
      health: {
        failingSince:
          current.failingSince !== null && current.failingSince > at ? current.failingSince : null,
        lastSuccessAt: current.lastSuccessAt === null ? at : Math.max(current.lastSuccessAt, at)
      },
      disable: false
    }
  }
  if (current.lastSuccessAt !== null && at < current.lastSuccessAt) return { health: current, disable: false }
  const failingSince = current.failingSince === null ? at : Math.min(current.failingSince, at)
  return {
    health: { failingSince, lastSuccessAt: current.lastSuccessAt },
    disable: at - failingSince >= Duration.toMillis(disableAfter)
  }
}

/**
 * A healthy endpoint that never had an attempt.
 *
 * @category constants
 */
export const initialHealth: Health = { failingSince: null, lastSuccessAt: null }
