/**
 * The example through `@strata/webhooks/Testing`, in-process and on simulated time: the receiver
 * app (its real routes, middleware, SQLite inbox and replay cache) against the delivery laws, and
 * the shop's orders, outbox and dispatcher delivering to a flaky fake receiver under TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { App } from "@strata/core"
import { Catalog, Signature } from "@strata/webhooks"
import * as OutboxSqlite from "@strata/webhooks/OutboxSqlite"
import * as Retry from "@strata/webhooks/Retry"
import * as Testing from "@strata/webhooks/Testing"
import { DatabaseSync } from "node:sqlite"
import { events } from "../src/catalog.ts"
import * as OrdersModule from "../src/Orders.ts"
import { Orders } from "../src/Orders.ts"
import { layerInbox, layerReplayCache, makeApp, type Received } from "../src/receiver.ts"
import * as Sender from "../src/sender.ts"

const secret = Signature.generateV1()

/**
 * A fresh receiver per case, observed through its own `/api/received`: what it recorded for each
 * webhook-id, leaving out the times (when it received and when the sender signed differ per run)
 * and sorted, as the page lists the newest first.
 */
const receiver = (): Testing.Subject => {
  const { handler, dispose } = App.toWebHandler(
    makeApp(secret),
    Layer.mergeAll(layerInbox(":memory:"), layerReplayCache())
  )
  return {
    handler,
    dispose,
    observe: async () => {
      const response = await handler(new Request("http://receiver.test/api/received"))
      const received = (await response.json()) as ReadonlyArray<Received>
      return received
        .map(({ webhookId, type, data, eventTime, summary, duplicates }) => ({
          webhookId,
          type,
          data,
          eventTime,
          summary,
          duplicates
        }))
        .toSorted((a, b) => a.webhookId.localeCompare(b.webhookId))
    }
  }
}

const laws = Testing.laws({ catalog: events, secrets: [secret], receiver, numRuns: 40 })

describe("the receiver obeys the delivery laws", () => {
  it("a duplicate delivery is acknowledged and recorded once", () => laws.idempotent())
  it("deliveries in any order record the same events", () => laws.reorderable())
  it("a delivery with a bad signature or a stale timestamp is refused and not recorded", () =>
    laws.verifiesSignatures())
})

describe("the shop's events through a flaky receiver, on TestClock", () => {
  it.effect(
    "are retried on the policy's schedule (Retry-After honoured), signed with the endpoint's secret",
    () => {
      // 10 s, then 1 minute; an overload answer waits at least 10 s and Retry-After up to 20 s.
      const policy = Retry.make({
        schedule: ["10 seconds", "1 minute"],
        overloadFloor: "10 seconds",
        jitter: 0,
        timeout: "5 seconds"
      })
      return Effect.acquireUseRelease(
        Effect.sync(() => new DatabaseSync(":memory:")),
        (db) =>
          Testing.world(
            {
              policy,
              // The shop's outbox, orders and endpoints on one database, as in `Sender.layerSqlite`.
              store: OutboxSqlite.layer({ database: db }),
              // Each message: 503 asking for 15 s, then a refused connection, then delivered.
              receiver: Testing.perMessage([{ status: 503, retryAfter: 15 }, "refuse", 204])
            },
            (fake) =>
              Effect.gen(function* () {
                yield* Sender.ensureEndpoint("receiver", "http://receiver.test/webhooks", secret)
                const orders = yield* Orders
                const created = yield* orders.create({
                  customer: "ada@example.com",
                  items: [{ sku: "book-42", quantity: 2 }],
                  total: { amount: 3998, currency: "EUR" }
                })
                const paid = yield* orders.pay(created.order.id)
                expect(yield* Testing.untilQuiet("10 minutes")).toBe(true)

                for (const [messageId, type] of [
                  [created.messageId, "order.created"],
                  [paid.messageId, "order.paid"]
                ] as const) {
                  const requests = fake.requests({ webhookId: messageId })
                  expect(requests.map((r) => r.attempt)).toEqual([0, 1, 2])
                  expect(requests[1]!.at - requests[0]!.at).toBe(15_000)
                  expect(requests[2]!.at - requests[1]!.at).toBe(60_000)
                  const event = yield* Catalog.decode(events, requests[2]!.body)
                  expect(event.type).toBe(type)
                  expect(event.data.orderId).toBe(created.order.id)
                }
                const [delivered] = yield* Testing.deliveries({ messageId: paid.messageId })
                expect(delivered!.delivery.state).toBe("delivered")
                expect(delivered!.attempts.map((a) => a.status)).toEqual([503, null, 204])
                // Every attempt checks with the secret the receiver holds, at the time it was sent.
                expect(yield* fake.unverified([secret])).toEqual([])
              }).pipe(Effect.provide(OrdersModule.layerSqlite(db)))
          ),
        (db) => Effect.sync(() => db.close())
      )
    }
  )
})
