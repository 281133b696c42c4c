/**
 * Type tests of the sending side (must compile / must not compile): `Outbox.send` takes only the
 * catalog's event types with their data, and needs the outbox store; the retry policy and endpoint
 * inputs are checked where a mistake is easy.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Catalog, Dispatcher, Endpoint, Outbox, Retry } from "../src/index.ts"

const events = Catalog.make({
  "order.paid": Schema.Struct({ id: Schema.String, amount: Schema.Number }),
  "order.refunded": Schema.Struct({ id: Schema.String })
})

// A catalog type with its data is sent, and the effect needs the store…
const sent: Effect.Effect<Outbox.Sent, Outbox.StoreError | Schema.SchemaError, Outbox.Store> = Outbox.send(
  events,
  "order.paid",
  { id: "o_1", amount: 42 },
  { idempotencyKey: "pay-o_1" }
)
void sent
// @ts-expect-error …an unknown type is not
Outbox.send(events, "order.shipped", { id: "o_1" })
// @ts-expect-error …nor the data of another type
Outbox.send(events, "order.refunded", { id: "o_1", amount: 42 })
// @ts-expect-error …nor data with a field of the wrong type
Outbox.send(events, "order.paid", { id: "o_1", amount: "42" })
// @ts-expect-error …nor an option that does not exist
Outbox.send(events, "order.paid", { id: "o_1", amount: 1 }, { idempotencyKy: "typo" })

// @ts-expect-error A send does not run without the store.
Effect.runPromise(Outbox.send(events, "order.refunded", { id: "o_1" }))

// Endpoint inputs: a URL is required; limits are numbers.
const _create: Endpoint.Create = { url: "https://example.com/hooks", eventTypes: ["order.*"], rateLimit: 10 }
// @ts-expect-error no URL
const _noUrl: Endpoint.Create = { eventTypes: ["order.*"] }
// @ts-expect-error a rate limit is attempts per second, a number
const _badRate: Endpoint.Create = { url: "https://example.com/hooks", rateLimit: "10/s" }

// The retry policy is built from durations; the decision is a tagged union.
const policy = Retry.make({ schedule: ["5 seconds", "5 minutes"], timeout: "10 seconds" })
// @ts-expect-error jitter is a number
Retry.make({ jitter: "20%" })
const decision = Retry.decide(policy, { attempt: 1, outcome: { _tag: "Timeout" }, random: 0.5, now: 0 })
if (decision._tag === "Retry") {
  const _delay: number = decision.delay
}
// @ts-expect-error an outcome is a response, a timeout or a transport error
Retry.decide(policy, { attempt: 1, outcome: { status: 200 }, random: 0.5, now: 0 })

// The dispatcher layer needs the store and an HttpClient, nothing else.
const _layer = Dispatcher.layer({ policy, batchSize: 128 })
// @ts-expect-error unknown option
Dispatcher.layer({ batchsize: 128 })

// Retention prunes only terminal deliveries, by age or by time.
const _pruned: Effect.Effect<Outbox.Pruned, Outbox.StoreError, Outbox.Store> = Outbox.prune({
  olderThan: "7 days",
  states: ["delivered", "failed"]
})
const _prunedBefore = Outbox.prune({ olderThan: new Date("2025-01-01"), limit: 10_000 })
// @ts-expect-error a pending delivery is never pruned
Outbox.prune({ olderThan: "7 days", states: ["pending"] })
// @ts-expect-error the cutoff is required
Outbox.prune({ states: ["delivered"] })
const _retention = Dispatcher.layer({ retention: "30 days" })
