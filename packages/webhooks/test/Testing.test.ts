/**
 * The testing kit itself: the fake receiver follows its script, the harness drives the real
 * dispatcher through simulated time (Retry-After included), and the delivery laws pass on a correct
 * receiver and fail on broken ones — each broken in one way.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as fc from "fast-check"
import { App, Route, Router } from "@strata/core"
import * as Property from "@strata/core/Property"
import * as Catalog from "../src/Catalog.ts"
import * as Endpoint from "../src/Endpoint.ts"
import * as Outbox from "../src/Outbox.ts"
import * as Receiver from "../src/Receiver.ts"
import * as Retry from "../src/Retry.ts"
import * as Signature from "../src/Signature.ts"
import * as Testing from "../src/Testing.ts"

// ---------------------------------------------------------------------------------------------------
// The fake receiver and the harness
// ---------------------------------------------------------------------------------------------------

const quick = Retry.make({
  schedule: ["1 second", "2 seconds", "3 seconds", "4 seconds"],
  overloadFloor: 0,
  jitter: 0,
  timeout: "5 seconds"
})

describe("Testing: fake receiver and harness", () => {
  it("follows a scripted sequence per host, the last answer repeating", () =>
    Property.effect(
      [
        fc.array(fc.constantFrom(500, 503, 429, 400), { maxLength: 3 }),
        fc.array(fc.constantFrom(500, 503, 200), { minLength: 1, maxLength: 4 })
      ],
      ([failures, other]) =>
        Testing.world(
          {
            policy: quick,
            receiver: Testing.byHost({ "a.test": [...failures, 204], "b.test": Testing.cycle(other) })
          },
          (fake) =>
            Effect.gen(function* () {
              const endpoints = yield* Endpoint.Endpoints
              const a = yield* endpoints.create({ url: "http://a.test/hook" })
              const b = yield* endpoints.create({ url: "http://b.test/hook" })
              const first = yield* Outbox.sendEncoded({ eventType: "t.x", payload: "{}" })
              expect(yield* Testing.untilQuiet("1 hour")).toBe(true)
              const attempts = yield* Outbox.attempts({ messageId: first.id, endpointId: a.id })
              expect(attempts.map((x) => x.status)).toEqual([...failures, 204])
              // A second message to a.test: the sequence is spent, the last answer repeats.
              const second = yield* Outbox.sendEncoded({ eventType: "t.x", payload: "{}" })
              expect(yield* Testing.untilQuiet("1 hour")).toBe(true)
              const again = yield* Outbox.attempts({ messageId: second.id, endpointId: a.id })
              expect(again.map((x) => x.status)).toEqual([204])
              // b.test cycles through its answers: what it recorded is what the dispatcher saw.
              const bRequests = fake.requests({ host: "b.test" })
              expect(bRequests.map((r) => r.answer)).toEqual(bRequests.map((_, i) => other[i % other.length]))
              const bAttempts = (yield* Testing.deliveries({ endpointId: b.id })).flatMap((d) => d.attempts)
              expect(bAttempts.map((x) => x.status).toSorted()).toEqual(
                bRequests.map((r) => r.answer as number).toSorted()
              )
            })
        ),
      { numRuns: 25 }
    ))

  it("perMessage counts attempts per webhook-id", () =>
    Property.effect(
      [fc.integer({ min: 1, max: 6 })],
      ([messages]) =>
        Effect.gen(function* () {
          const fake = yield* Testing.Fake
          const sent = yield* Effect.forEach(Array.from({ length: messages }), () =>
            Outbox.sendEncoded({ eventType: "t.x", payload: "{}" })
          )
          expect(yield* Testing.untilQuiet("1 hour")).toBe(true)
          for (const message of sent) {
            const requests = fake.requests({ webhookId: message.id })
            expect(requests.map((r) => [r.attempt, r.answer])).toEqual([
              [0, 500],
              [1, 500],
              [2, 200]
            ])
          }
          const rows = yield* Testing.deliveries()
          expect(rows.every((row) => row.delivery.state === "delivered")).toBe(true)
        }),
      {
        layer: Testing.layer({
          policy: quick,
          receiver: Testing.perMessage([500, 500, 200]),
          endpoints: [{ url: "http://a.test/hook" }]
        }),
        numRuns: 15
      }
    ))

  it("honours Retry-After through the harness", () =>
    Property.effect(
      [fc.integer({ min: 0, max: 120 })],
      ([seconds]) => {
        // 10 s after an overload answer; Retry-After is clamped into [10 s, 20 s].
        const policy = Retry.make({ schedule: ["10 seconds"], overloadFloor: "10 seconds", jitter: 0 })
        return Testing.world({ policy, receiver: [{ status: 503, retryAfter: seconds }, 200] }, (fake) =>
          Effect.gen(function* () {
            yield* (yield* Endpoint.Endpoints).create({ url: "http://a.test/hook" })
            yield* Outbox.sendEncoded({ eventType: "t.x", payload: "{}" })
            expect(yield* Testing.untilQuiet("1 hour", "500 millis")).toBe(true)
            const [first, second] = fake.received
            expect(fake.received.length).toBe(2)
            const expected = Math.min(Math.max(seconds * 1000, 10_000), 20_000)
            // The dispatcher wakes on its timer; the harness steps the clock by 500 ms.
            expect(second!.at - first!.at).toBeGreaterThanOrEqual(expected)
            expect(second!.at - first!.at).toBeLessThan(expected + 500)
          })
        )
      },
      { numRuns: 30 }
    ))

  it.effect("hang-ups: hang, refuse, reset and a cut body are each recorded as the dispatcher saw them", () =>
    Testing.world(
      {
        policy: Retry.make({
          schedule: ["1 second", "1 second", "1 second", "1 second"],
          jitter: 0,
          timeout: "5 seconds"
        }),
        receiver: ["hang", "refuse", "reset", { status: 200, body: "0123456789", cut: true }]
      },
      (fake) =>
        Effect.gen(function* () {
          const endpoint = yield* (yield* Endpoint.Endpoints).create({ url: "http://a.test/hook" })
          const sent = yield* Outbox.sendEncoded({ eventType: "t.x", payload: "{}" })
          expect(yield* Testing.untilQuiet("1 hour", "500 millis")).toBe(true)
          const attempts = yield* Outbox.attempts({ messageId: sent.id, endpointId: endpoint.id })
          expect(attempts.map((a) => [a.status, a.result])).toEqual([
            [null, "retry"],
            [null, "retry"],
            [null, "retry"],
            [200, "delivered"]
          ])
          expect(attempts[0]!.error).toMatch(/timed out/)
          expect(attempts[1]!.error).toMatch(/ECONNREFUSED/)
          expect(attempts[2]!.error).toMatch(/ECONNRESET/)
          // The status counts; the body broke off after its first half.
          expect(attempts[3]!.responseBody).toBe("01234")
          expect(fake.received[0]!.endedAt).toBeUndefined()
          expect(fake.inFlight.get("a.test")).toBe(0)
        })
    )
  )

  it.effect("delays run on the TestClock and in-flight requests are counted per host", () =>
    Testing.world(
      {
        receiver: { status: 200, delay: "3 seconds" },
        endpoints: [{ url: "http://a.test/hook", concurrency: 2 }]
      },
      (fake) =>
        Effect.gen(function* () {
          for (let i = 0; i < 5; i++) yield* Outbox.sendEncoded({ eventType: "t.x", payload: "{}" })
          yield* Testing.settle
          expect(fake.inFlight.get("a.test")).toBe(2)
          expect(yield* Testing.untilQuiet("1 minute")).toBe(true)
          expect(fake.received.every((r) => r.endedAt! - r.at === 3000)).toBe(true)
          expect(fake.maxInFlight.get("a.test")).toBe(2)
        })
    )
  )

  it.effect("every request is signed with the endpoint's keys, and with no other", () =>
    Testing.world({ receiver: [500, 200], policy: quick }, (fake) =>
      Effect.gen(function* () {
        const endpoint = yield* (yield* Endpoint.Endpoints).create({ url: "http://a.test/hook" })
        yield* Outbox.sendEncoded({ eventType: "t.x", payload: '{"a":1}' })
        expect(yield* Testing.untilQuiet("1 hour")).toBe(true)
        expect(fake.received.length).toBe(2)
        const keys = endpoint.keys.map((key) => key.secret)
        expect(yield* fake.unverified(keys)).toEqual([])
        expect((yield* fake.unverified([Signature.generateV1()])).length).toBe(2)
        const verified = yield* Testing.verifyReceived(fake.received[1]!, keys)
        expect(verified.id).toBe(fake.received[0]!.headers["webhook-id"])
      })
    )
  )
})

// ---------------------------------------------------------------------------------------------------
// The delivery laws
// ---------------------------------------------------------------------------------------------------

const Account = Schema.Literals(["acc_1", "acc_2"])

const events = Catalog.make({
  "balance.set": Schema.Struct({
    account: Account,
    value: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 3 }))
  }),
  "credit.added": Schema.Struct({
    account: Account,
    amount: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 5 }))
  })
})

type Event = Catalog.Event<Catalog.EventsOf<typeof events>>

const secret = Signature.secretV1("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")

/** A receiver's state: balances set by the latest event, credits summed. */
interface Ledger {
  readonly balances: Map<string, { value: number; at: number; id: string }>
  readonly credits: Map<string, number>
}

const emptyLedger = (): Ledger => ({ balances: new Map(), credits: new Map() })

const observeLedger = (ledger: Ledger) => ({
  balances: Object.fromEntries(
    [...ledger.balances].map(([account, { value }]) => [account, value]).toSorted()
  ),
  credits: Object.fromEntries([...ledger.credits].toSorted())
})

/**
 * Applies an event. `byArrival` is the order-dependent mistake: the latest to arrive wins, instead
 * of the latest by the event's own time (ties broken by delivery id).
 */
const apply = (ledger: Ledger, event: Event, id: string, byArrival: boolean) => {
  switch (event.type) {
    case "balance.set": {
      const at = DateTime.toEpochMillis(event.timestamp)
      const current = ledger.balances.get(event.data.account)
      const newer = current === undefined || at > current.at || (at === current.at && id > current.id)
      if (byArrival || newer) ledger.balances.set(event.data.account, { value: event.data.value, at, id })
      return
    }
    case "credit.added":
      ledger.credits.set(
        event.data.account,
        (ledger.credits.get(event.data.account) ?? 0) + event.data.amount
      )
      return
  }
}

class Hook extends Receiver.Event<Hook>()("test/Hook", events) {}
class Books extends Context.Service<Books, { readonly ledger: Ledger; readonly byArrival: boolean }>()(
  "test/Books"
) {}

const receive = Route.post(
  "/webhooks",
  Effect.gen(function* () {
    const event = yield* Hook
    const delivery = yield* Receiver.Delivery
    const books = yield* Books
    // A store's round trip: copies sent at once overlap here, so the replay cache's claim is what
    // keeps the second one out.
    yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
    apply(books.ledger, event, delivery.id, books.byArrival)
    return HttpServerResponse.empty({ status: 204 })
  })
)

const strataReceiver =
  (options: {
    readonly byArrival?: boolean
    readonly middleware?: Partial<Receiver.Options>
    readonly cache?: Layer.Layer<Receiver.ReplayCache>
  }) =>
  (): Testing.Subject => {
    const ledger = emptyLedger()
    const app = Router.group("", [receive]).pipe(
      Router.use(
        Receiver.middleware(Hook, {
          scheme: Receiver.standardWebhooks([secret]),
          onDuplicate: "acknowledge",
          ...options.middleware
        })
      )
    )
    const { handler, dispose } = App.toWebHandler(
      app,
      Layer.merge(
        options.cache ?? Receiver.layerMemory(),
        Layer.succeed(Books, { ledger, byArrival: options.byArrival ?? false })
      )
    )
    return { handler, dispose, observe: () => observeLedger(ledger) }
  }

/** A replay cache that never remembers anything. */
const forgetful = Layer.succeed(Receiver.ReplayCache, {
  claim: () => Effect.succeed("claimed" as const),
  complete: () => Effect.void,
  release: () => Effect.void
})

/** Reads a delivery's id and event the way `scheme` sends them, checking no signature. */
const unverified = async (
  scheme: "StandardWebhooks" | "Stripe" | "GitHub",
  request: Request
): Promise<{ readonly id: string; readonly event: Event } | undefined> => {
  const text = await request.text()
  const json = (): Record<string, unknown> => {
    try {
      return JSON.parse(text) as Record<string, unknown>
    } catch {
      return {}
    }
  }
  const [id, decoding] =
    scheme === "StandardWebhooks"
      ? [request.headers.get("webhook-id"), Catalog.decode(events, text)]
      : scheme === "Stripe"
        ? [
            String(json()["id"]),
            Catalog.decodeParts(events, {
              type: json()["type"],
              // A body that is not the event's JSON has no time: 0, and then it does not decode.
              timestamp: DateTime.makeUnsafe(
                Number.isFinite(Number(json()["created"])) ? Number(json()["created"]) * 1000 : 0
              ),
              data: json()["data"]
            })
          ]
        : [
            request.headers.get("x-github-delivery"),
            Catalog.decodeParts(events, {
              type: request.headers.get("x-github-event"),
              timestamp: DateTime.makeUnsafe(0),
              data: json()
            })
          ]
  const decoded = await Effect.runPromise(Effect.result(decoding))
  return decoded._tag === "Failure" ? undefined : { id: id ?? "?", event: decoded.success }
}

/** Decodes and applies whatever it is sent, once per delivery id, without looking at the signature. */
const trusting =
  (scheme: "StandardWebhooks" | "Stripe" | "GitHub" = "StandardWebhooks") =>
  (): Testing.Subject => {
    const ledger = emptyLedger()
    const seen = new Set<string>()
    return {
      handler: async (request) => {
        const delivery = await unverified(scheme, request)
        if (delivery === undefined) return new Response(null, { status: 400 })
        if (!seen.has(delivery.id)) apply(ledger, delivery.event, delivery.id, false)
        seen.add(delivery.id)
        return new Response(null, { status: 204 })
      },
      observe: () => observeLedger(ledger)
    }
  }

/**
 * Idempotent only one request at a time: it looks the id up, then writes the event and the id after
 * an await (a store's round trip) without claiming the id first, so two copies at once both apply.
 */
const checksThenWrites = (): Testing.Subject => {
  const ledger = emptyLedger()
  const done = new Set<string>()
  return {
    handler: async (request) => {
      const delivery = await unverified("StandardWebhooks", request)
      if (delivery === undefined) return new Response(null, { status: 400 })
      if (done.has(delivery.id)) return new Response(null, { status: 200 })
      await new Promise((resolve) => setImmediate(resolve))
      apply(ledger, delivery.event, delivery.id, false)
      done.add(delivery.id)
      return new Response(null, { status: 204 })
    },
    observe: () => observeLedger(ledger)
  }
}

const stripeSecret = Redacted.make("whsec_test_4eC39HqLyjWDarjtT1zdp7dc")
const githubSecrets = [Redacted.make("It's a Secret to Everybody"), Redacted.make("the next secret")]

const stripeLaws = (receiver: () => Testing.Subject) =>
  Testing.laws({ catalog: events, scheme: "Stripe", secrets: [stripeSecret], receiver, numRuns: 60 })

// GitHub sends no event time (the receiver stamps the receipt time), so this ledger keeps the last
// balance to arrive, and the laws keep each account's events in order.
const githubLaws = (receiver: () => Testing.Subject) =>
  Testing.laws({
    catalog: events,
    scheme: "GitHub",
    secrets: githubSecrets,
    receiver,
    orderedBy: (event) => event.data.account,
    numRuns: 60
  })

const lawsOf = (
  receiver: () => Testing.Subject,
  extra?: Partial<Testing.LawsBaseOptions<typeof events.events>>
) => Testing.laws({ catalog: events, secrets: [secret], receiver, numRuns: 60, ...extra })

const rejectsWith = async (run: Promise<void>, pattern: RegExp) => {
  const error = await run.then(
    () => undefined,
    (e: unknown) => e
  )
  expect(error).toBeInstanceOf(Error)
  const message = (error as Error).message
  expect(message).toMatch(pattern)
  // fast-check's report: the seed to replay it, and the deliveries of the shrunk case.
  expect(message).toMatch(/seed/)
  expect(message).toMatch(/Deliveries, in order:\n {2}\S/)
}

describe("Testing: delivery laws", () => {
  const correct = lawsOf(strataReceiver({}))

  it("a correct receiver is idempotent", () => correct.idempotent())
  it("a correct receiver is reorderable", () => correct.reorderable())
  it("a correct receiver verifies signatures", () => correct.verifiesSignatures())

  it("a receiver whose replay cache forgets counts a duplicate credit twice: not idempotent", () =>
    rejectsWith(lawsOf(strataReceiver({ cache: forgetful })).idempotent(), /idempotent[\s\S]*credits/))

  it("a receiver that answers 401 to a duplicate makes the sender retry it: not idempotent", () =>
    rejectsWith(
      lawsOf(strataReceiver({ middleware: { onDuplicate: "reject" } })).idempotent(),
      /already accepted, was answered 401/
    ))

  it("last-write-wins by arrival is order-dependent: not reorderable", () =>
    rejectsWith(
      lawsOf(strataReceiver({ byArrival: true })).reorderable(),
      /another order left another state/
    ))

  it("last-write-wins by arrival holds when the sender keeps each account's events in order", () =>
    lawsOf(strataReceiver({ byArrival: true }), { orderedBy: (event) => event.data.account }).reorderable())

  it("a receiver that skips verification fails verifiesSignatures", () =>
    rejectsWith(lawsOf(trusting()).verifiesSignatures(), /verifies signatures[\s\S]*must be refused/))

  it("a receiver that accepts any timestamp fails verifiesSignatures", () =>
    rejectsWith(
      lawsOf(strataReceiver({ middleware: { tolerance: "3650 days" } })).verifiesSignatures(),
      /(signed \d+s before the tolerance|in the future) was answered 204/
    ))

  it("a receiver that checks, then writes across an await, applies two copies at once: not idempotent", () =>
    rejectsWith(lawsOf(checksThenWrites).idempotent(), /idempotent[\s\S]*credits[\s\S]*at once: /))

  it("the same receiver passes when duplicates never come at once", () =>
    lawsOf(checksThenWrites, { concurrentDuplicates: false }).idempotent())

  describe("Stripe", () => {
    const stripeCorrect = stripeLaws(
      strataReceiver({ middleware: { scheme: Receiver.stripe(stripeSecret) } })
    )
    it("a correct receiver is idempotent", () => stripeCorrect.idempotent())
    it("a correct receiver is reorderable", () => stripeCorrect.reorderable())
    it("a correct receiver verifies signatures", () => stripeCorrect.verifiesSignatures())
    it("a receiver that skips verification fails verifiesSignatures", () =>
      rejectsWith(
        stripeLaws(trusting("Stripe")).verifiesSignatures(),
        /verifies signatures[\s\S]*must be refused/
      ))
  })

  describe("GitHub", () => {
    const githubCorrect = githubLaws(
      strataReceiver({ byArrival: true, middleware: { scheme: Receiver.github(githubSecrets) } })
    )
    it("a correct receiver is idempotent", () => githubCorrect.idempotent())
    it("a correct receiver is reorderable", () => githubCorrect.reorderable())
    it("a correct receiver verifies signatures", () => githubCorrect.verifiesSignatures())
    it("a receiver that skips verification fails verifiesSignatures", () =>
      rejectsWith(
        githubLaws(trusting("GitHub")).verifiesSignatures(),
        /verifies signatures[\s\S]*must be refused/
      ))
  })

  it("Testing.events draws every type of the catalog with data its Schema accepts", () =>
    Property.sync([Testing.events(events)], ([event]) => {
      expect(Catalog.has(events, event.type)).toBe(true)
      expect(Schema.is(events.events[event.type])(event.data)).toBe(true)
    }))
})
