/**
 * The retry policy's invariants as fast-check properties: the pure decision function directly, and
 * the Schedule built from it driven by `Effect.repeat` under TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/testing/TestClock"
import * as fc from "fast-check"
import * as Retry from "../src/Retry.ts"
import * as Property from "@strata/core/Property"

const second = 1000
const minute = 60 * second
const hour = 60 * minute

// Schedules in whole seconds up to a day, jitter up to the default and beyond.
const scheduleArb = fc.array(fc.integer({ min: 0, max: (24 * hour) / second }), {
  minLength: 0,
  maxLength: 10
})
const policyArb = fc
  .record({
    schedule: scheduleArb,
    jitter: fc.constantFrom(0, 0.1, 0.2, 0.5),
    floor: fc.integer({ min: 0, max: 3600 }),
    cap: fc.option(fc.integer({ min: 1, max: (48 * hour) / second }), { nil: undefined })
  })
  .map(({ cap, floor, jitter, schedule }) =>
    Retry.make({
      schedule: schedule.map((s) => s * second),
      jitter,
      overloadFloor: floor * second,
      ...(cap === undefined ? {} : { maxDelay: cap * second })
    })
  )
const withSteps = policyArb.filter((policy) => policy.schedule.length > 0)

const ms = (d: Duration.Duration) => Duration.toMillis(d)

const failureStatus = fc.oneof(
  fc.integer({ min: 300, max: 399 }),
  fc.integer({ min: 400, max: 599 }).filter((s) => s !== 410 && s !== 429 && ![502, 503, 504].includes(s)),
  fc.integer({ min: 100, max: 199 })
)
const plainFailure: fc.Arbitrary<Retry.Outcome> = fc.oneof(
  failureStatus.map((status) => ({ _tag: "Response" as const, status })),
  fc.constant({ _tag: "TransportError" as const, message: "ECONNREFUSED" })
)
const overload: fc.Arbitrary<Retry.Outcome> = fc.oneof(
  fc.constant({ _tag: "Timeout" as const }),
  fc.record({
    _tag: fc.constant("Response" as const),
    status: fc.constantFrom(429, 502, 503, 504),
    retryAfter: fc.option(fc.oneof(fc.nat({ max: 200_000 }).map(String), fc.string()), { nil: undefined })
  })
)
const anyFailure = fc.oneof(plainFailure, overload)
const random = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })
const now = fc.integer({ min: 0, max: 4_000_000_000_000 })

/** An attempt number that has a schedule step after it. */
const stepOf = (policy: Retry.Policy) => fc.integer({ min: 1, max: policy.schedule.length })

const envelope = (policy: Retry.Policy, base: number) => {
  const cap = ms(policy.maxDelay)
  return [Math.min(cap, base * (1 - policy.jitter)), Math.min(cap, base * (1 + policy.jitter))] as const
}

// Retry-After in every form a server may send.
const imf = (millis: number) => new Date(millis).toUTCString()
const days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
const rfc850 = (millis: number) => {
  const d = new Date(millis)
  const [, dd, mon, yyyy, time] = imf(millis).split(" ")
  return `${days[d.getUTCDay()]}, ${dd}-${mon}-${yyyy!.slice(2)} ${time} GMT`
}
const asctime = (millis: number) => {
  const [dow, dd, mon, yyyy, time] = imf(millis).replace(",", "").split(" ")
  return `${dow} ${mon} ${String(Number(dd)).padStart(2, " ")} ${time} ${yyyy}`
}
// Whole seconds from a whole-second now, so a date and its seconds agree exactly; within 40
// years so the RFC 850 two-digit year reads back as the same century.
const wholeNow = fc.integer({ min: 1_000_000_000, max: 2_000_000_000 }).map((s) => s * 1000)
const asked = fc.integer({ min: 0, max: 3 * 24 * 3600 })
const format = fc
  .constantFrom<ReadonlyArray<"seconds" | "imf" | "rfc850" | "asctime">>([
    "seconds",
    "imf",
    "rfc850",
    "asctime"
  ])
  .chain((formats) => fc.constantFrom(...formats))

describe("Retry", () => {
  it("attempts ≤ 1 + schedule length", () =>
    Property.effect(
      [
        policyArb,
        fc.array(
          fc.oneof(
            anyFailure,
            anyFailure,
            anyFailure,
            fc.constant<Retry.Outcome>({ _tag: "Response", status: 200 })
          ),
          { minLength: 1, maxLength: 20 }
        )
      ],
      ([policy, script]) =>
        Effect.gen(function* () {
          let attempts = 0
          const attempt = Effect.sync((): Retry.Outcome => script[attempts++ % script.length]!)
          const fiber = yield* Effect.forkChild(Effect.repeat(attempt, Retry.schedule(policy)))
          // Long enough for every step at its largest.
          yield* TestClock.adjust(Duration.millis((policy.schedule.length + 1) * 100 * 24 * hour))
          const last = yield* Fiber.join(fiber)
          expect(attempts).toBeLessThanOrEqual(Retry.maxAttempts(policy))
          const firstSuccess = script.findIndex((o) => Retry.classify(o) === "success")
          const ending = firstSuccess >= 0 && firstSuccess < Retry.maxAttempts(policy)
          expect(last._tag).toBe(ending ? "Delivered" : "Failed")
          expect(attempts).toBe(ending ? firstSuccess + 1 : Retry.maxAttempts(policy))
          // A manual retry is one attempt whatever its outcome.
          for (const outcome of script) {
            expect(
              Retry.decide(policy, { attempt: 1, outcome, random: 0.5, now: 0, manual: true })._tag
            ).not.toBe("Retry")
          }
        })
    ))

  it("delays inside the jitter envelope", () =>
    Property.effect(
      [withSteps.chain((policy) => fc.tuple(fc.constant(policy), stepOf(policy))), plainFailure, random, now],
      ([[policy, attempt], outcome, r, at]) =>
        Effect.sync(() => {
          const decision = Retry.decide(policy, { attempt, outcome, random: r, now: at })
          const base = ms(policy.schedule[attempt - 1]!)
          const [low, high] = envelope(policy, base)
          expect(decision._tag).toBe("Retry")
          if (decision._tag !== "Retry") return
          expect(Number.isInteger(decision.delay)).toBe(true)
          expect(decision.delay).toBeGreaterThanOrEqual(low)
          expect(decision.delay).toBeLessThanOrEqual(high)
        })
    ))

  it("delays inside the jitter envelope, as the Schedule waits them under TestClock", () =>
    Property.effect([withSteps], ([policy]) =>
      Effect.gen(function* () {
        const times: Array<number> = []
        const attempt = Effect.map(Clock.currentTimeMillis, (t): Retry.Outcome => {
          times.push(t)
          return { _tag: "Response", status: 500 }
        })
        const fiber = yield* Effect.forkChild(Effect.repeat(attempt, Retry.schedule(policy)))
        yield* TestClock.adjust(Duration.millis((policy.schedule.length + 1) * 100 * 24 * hour))
        yield* Fiber.join(fiber)
        expect(times.length).toBe(Retry.maxAttempts(policy))
        for (let i = 1; i < times.length; i++) {
          const [low, high] = envelope(policy, ms(policy.schedule[i - 1]!))
          const waited = times[i]! - times[i - 1]!
          expect(waited).toBeGreaterThanOrEqual(Math.floor(low))
          expect(waited).toBeLessThanOrEqual(Math.ceil(high))
        }
      })
    ))

  it("the cap holds after jitter", () =>
    Property.effect(
      [withSteps.chain((policy) => fc.tuple(fc.constant(policy), stepOf(policy))), anyFailure, random, now],
      ([[policy, attempt], outcome, r, at]) =>
        Effect.sync(() => {
          const decision = Retry.decide(policy, { attempt, outcome, random: r, now: at })
          if (decision._tag !== "Retry") throw new Error(`expected a retry, got ${decision._tag}`)
          expect(decision.delay).toBeLessThanOrEqual(ms(policy.maxDelay))
          // The extreme draws too: the upper edge of the jitter is where Convoy's cap broke.
          for (const edge of [0, 0.999999]) {
            const extreme = Retry.retryDelay(policy, { attempt, outcome, random: edge, now: at })
            expect(extreme).toBeLessThanOrEqual(ms(policy.maxDelay))
          }
        })
    ))

  it("the overload floor after 429/timeouts", () =>
    Property.effect(
      [withSteps.chain((policy) => fc.tuple(fc.constant(policy), stepOf(policy))), overload, random, now],
      ([[policy, attempt], outcome, r, at]) =>
        Effect.sync(() => {
          const decision = Retry.decide(policy, { attempt, outcome, random: r, now: at })
          if (decision._tag !== "Retry") throw new Error(`expected a retry, got ${decision._tag}`)
          expect(decision.overload).toBe(true)
          const floor = Math.max(ms(policy.schedule[attempt - 1]!), ms(policy.overloadFloor))
          expect(decision.delay).toBeGreaterThanOrEqual(
            Math.min(ms(policy.maxDelay), floor * (1 - policy.jitter))
          )
          // With the defaults: at least 0.8 · 60 s after the first, immediate, attempt.
          const first = Retry.decide(Retry.defaultPolicy, { attempt: 1, outcome, random: r, now: at })
          expect(first._tag === "Retry" && first.delay >= 48_000).toBe(true)
        })
    ))

  it("Retry-After clamping for seconds, HTTP-date and garbage", async () => {
    // Seconds and all three HTTP-date forms are clamped into [base, 2·base], then jittered.
    await Property.effect(
      [
        withSteps.chain((policy) => fc.tuple(fc.constant(policy), stepOf(policy))),
        fc.constantFrom(429, 502, 503, 504),
        asked,
        format,
        random,
        wholeNow
      ],
      ([[policy, attempt], status, seconds, form, r, at]) =>
        Effect.sync(() => {
          const target = at + seconds * 1000
          const retryAfter =
            form === "seconds"
              ? String(seconds)
              : form === "imf"
                ? imf(target)
                : form === "rfc850"
                  ? rfc850(target)
                  : asctime(target)
          expect(Retry.parseRetryAfter(retryAfter, at)).toBe(seconds * 1000)
          const base = Math.max(ms(policy.schedule[attempt - 1]!), ms(policy.overloadFloor))
          const clamped = Math.min(Math.max(seconds * 1000, base), 2 * base)
          const decision = Retry.decide(policy, {
            attempt,
            outcome: { _tag: "Response", status, retryAfter },
            random: r,
            now: at
          })
          if (decision._tag !== "Retry") throw new Error(`expected a retry, got ${decision._tag}`)
          const [low, high] = envelope(policy, clamped)
          expect(decision.delay).toBeGreaterThanOrEqual(low)
          expect(decision.delay).toBeLessThanOrEqual(high)
        })
    )
    // Garbage is ignored: the delay is the floored base's.
    await Property.effect(
      [
        withSteps.chain((policy) => fc.tuple(fc.constant(policy), stepOf(policy))),
        fc
          .oneof(
            fc.string(),
            fc.constantFrom(
              "-5",
              "1.5",
              "1e3",
              " ",
              "",
              "Tomorrow",
              "Sun, 06 Nov 1994 08:49:37 PST",
              "Sun, 31 Feb 2021 08:49:37 GMT",
              "Sun, 06 Nov 1994 25:49:37 GMT",
              "0x10",
              "١٢٣"
            )
          )
          .filter((s) => !/^\s*[0-9]{1,12}\s*$/.test(s) && Retry.parseHttpDate(s.trim()) === undefined),
        random,
        wholeNow
      ],
      ([[policy, attempt], garbage, r, at]) =>
        Effect.sync(() => {
          expect(Retry.parseRetryAfter(garbage, at)).toBeUndefined()
          const base = Math.max(ms(policy.schedule[attempt - 1]!), ms(policy.overloadFloor))
          const decision = Retry.decide(policy, {
            attempt,
            outcome: { _tag: "Response", status: 429, retryAfter: garbage },
            random: r,
            now: at
          })
          const plain = Retry.decide(policy, {
            attempt,
            outcome: { _tag: "Response", status: 429 },
            random: r,
            now: at
          })
          expect(decision).toEqual(plain)
          if (decision._tag !== "Retry") throw new Error(`expected a retry, got ${decision._tag}`)
          const [low, high] = envelope(policy, base)
          expect(decision.delay).toBeGreaterThanOrEqual(low)
          expect(decision.delay).toBeLessThanOrEqual(high)
        })
    )
    // A date in the past asks for no wait, so the floored base applies.
    expect(Retry.parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", Date.UTC(2000, 0, 1))).toBe(0)
    expect(Retry.parseRetryAfter("Sunday, 06-Nov-94 08:49:37 GMT", Date.UTC(1994, 10, 6, 8, 49, 30))).toBe(
      7000
    )
    expect(Retry.parseRetryAfter("Sun Nov  6 08:49:37 1994", Date.UTC(1994, 10, 6, 8, 49, 37))).toBe(0)
    expect(Retry.parseRetryAfter(" 120 ", 0)).toBe(120_000)
  })

  it("scheduled times only move forward", () =>
    Property.effect(
      [
        withSteps,
        fc.array(anyFailure, { minLength: 1, maxLength: 12 }),
        fc.array(random, { minLength: 12, maxLength: 12 }),
        now
      ],
      ([policy, outcomes, draws, start]) =>
        Effect.sync(() => {
          // Each retry is scheduled from the time its attempt ended, which is never earlier than the
          // time it was scheduled for; so scheduled times are non-decreasing, and the whole window is
          // bounded by the jittered sum of the (floored, Retry-After-stretched) steps.
          let at = start
          let previous = start
          let bound = 0
          for (let attempt = 1; attempt <= policy.schedule.length; attempt++) {
            const outcome = outcomes[(attempt - 1) % outcomes.length]!
            const decision = Retry.decide(policy, { attempt, outcome, random: draws[attempt - 1]!, now: at })
            if (decision._tag !== "Retry") throw new Error(`expected a retry, got ${decision._tag}`)
            const next = at + decision.delay
            expect(next).toBeGreaterThanOrEqual(at)
            expect(next).toBeGreaterThanOrEqual(previous)
            const base = ms(policy.schedule[attempt - 1]!)
            const floored = decision.overload ? 2 * Math.max(base, ms(policy.overloadFloor)) : base
            bound += Math.min(ms(policy.maxDelay), floored * (1 + policy.jitter))
            expect(next - start).toBeLessThanOrEqual(bound)
            previous = next
            // The attempt itself takes some time (up to the timeout) before the next decision.
            at = next + ((draws[attempt - 1]! * ms(policy.timeout)) | 0)
            bound += ms(policy.timeout)
          }
        })
    ))

  it("stop rules: 2xx delivers, 410 disables, 3xx is a failure", () =>
    Property.effect(
      [
        withSteps.chain((policy) =>
          fc.tuple(fc.constant(policy), fc.integer({ min: 1, max: policy.schedule.length + 1 }))
        ),
        random
      ],
      ([[policy, attempt], r]) =>
        Effect.sync(() => {
          const step = (status: number) =>
            Retry.decide(policy, { attempt, outcome: { _tag: "Response", status }, random: r, now: 0 })
          for (let status = 200; status < 300; status += 7) expect(step(status)._tag).toBe("Delivered")
          expect(step(410)._tag).toBe("Disable")
          for (const status of [300, 301, 302, 303, 307, 308]) {
            expect(Retry.classify({ _tag: "Response", status })).toBe("failure")
            expect(step(status)._tag).toBe(attempt > policy.schedule.length ? "Failed" : "Retry")
          }
        })
    ))

  it("health: a run of failures disables only once it has lasted disableAfter; any success resets it", () =>
    Property.effect(
      [
        fc.integer({ min: 1, max: 100 }),
        fc.array(fc.record({ gap: fc.integer({ min: 0, max: 40 }), ok: fc.boolean() }), { maxLength: 60 })
      ],
      ([disableAfter, attempts]) =>
        Effect.sync(() => {
          let health = Retry.initialHealth
          let t = 0
          let runStart: number | undefined
          for (const { gap, ok } of attempts) {
            t += gap
            const next = Retry.health(disableAfter, health, { ok, at: t })
            if (ok) runStart = undefined
            else runStart ??= t
            expect(next.disable).toBe(!ok && t - runStart! >= disableAfter)
            health = next.health
          }
        })
    ))

  it("the default policy is Svix's", () => {
    const policy = Retry.defaultPolicy
    expect(policy.schedule.map(ms)).toEqual([
      5 * second,
      5 * minute,
      30 * minute,
      2 * hour,
      5 * hour,
      10 * hour,
      10 * hour
    ])
    expect(Retry.maxAttempts(policy)).toBe(8)
    expect(policy.jitter).toBe(0.2)
    expect(ms(policy.timeout)).toBe(15 * second)
    expect(ms(policy.overloadFloor)).toBe(60 * second)
    expect(ms(policy.disableAfter)).toBe(5 * 24 * hour)
    expect(() => Retry.make({ jitter: 1 })).toThrow()
    expect(() => Retry.make({ schedule: [-1] })).toThrow()
  })
})
