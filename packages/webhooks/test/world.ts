/**
 * A dispatcher world for tests: an outbox store, the dispatcher and a fake receiver, driven by
 * TestClock.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/testing/TestClock"
import * as Dispatcher from "../src/Dispatcher.ts"
import type * as Endpoint from "../src/Endpoint.ts"
import * as Outbox from "../src/Outbox.ts"
import * as OutboxSqlite from "../src/OutboxSqlite.ts"
import type * as Retry from "../src/Retry.ts"
import { type Answer, type FakeReceiver, makeReceiver, type Received } from "./receiver.ts"

export type Services = Outbox.Store | Endpoint.Endpoints | Dispatcher.Dispatcher

/** Runs `body` against a fresh in-memory SQLite store, a dispatcher and a fake receiver. */
export const inWorld = <A, E>(
  options: {
    readonly answer: (request: Received, index: number) => Answer
    readonly policy: Retry.Policy
    readonly dispatcher?: Omit<Dispatcher.Options, "policy"> | undefined
  },
  body: (receiver: FakeReceiver) => Effect.Effect<A, E, Services>
): Effect.Effect<A, E | Outbox.StoreError> => {
  const receiver = makeReceiver(options.answer)
  const layer = Dispatcher.layer({
    pollInterval: "1 minute",
    ...options.dispatcher,
    policy: options.policy
  }).pipe(Layer.provideMerge(OutboxSqlite.layer({ filename: ":memory:" })), Layer.provide(receiver.layer))
  return Effect.provide(body(receiver), layer)
}

/** Lets forked fibers run without moving the clock. */
export const settle = Effect.gen(function* () {
  for (let i = 0; i < 8; i++) yield* Effect.yieldNow
})

/** Moves the clock `millis` forward in steps, letting the dispatcher run after each. */
export const advance = (millis: number, step = 1000) =>
  Effect.gen(function* () {
    for (let done = 0; done < millis; done += step) {
      yield* TestClock.adjust(Math.min(step, millis - done))
      yield* settle
    }
  })

/** Advances until every delivery is terminal (checked every `step`), for at most `max` ms. */
export const untilQuiet = (max: number, step = 1000) =>
  Effect.gen(function* () {
    yield* settle
    for (let done = 0; done < max; done += step) {
      const pending = yield* Outbox.deliveries({ state: "pending", limit: 1 })
      if (pending.length === 0) return true
      yield* TestClock.adjust(step)
      yield* settle
    }
    return (yield* Outbox.deliveries({ state: "pending", limit: 1 })).length === 0
  })

/** Every delivery (up to 1000) and its attempts. */
export const allDeliveries = Effect.gen(function* () {
  const deliveries = yield* Outbox.deliveries({ limit: 1000 })
  return yield* Effect.forEach(deliveries, (delivery) =>
    Effect.map(Outbox.attempts(delivery), (attempts) => ({ delivery, attempts }))
  )
})
