/**
 * The example over real sockets on 127.0.0.1: the sender's dispatcher (through the SSRF guard)
 * delivers order events to the receiver; while the receiver is down deliveries fail and are
 * rescheduled, and once it is back each event arrives exactly once. A tampered delivery is refused
 * and not recorded.
 *
 * Real time, not TestClock: the attempts go over sockets to a server that really is down. The retry
 * schedule is a value, so the test gives the dispatcher one of 200 ms steps and the whole file runs
 * in a few seconds; every wait is bounded.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { Signature } from "@strata/webhooks"
import * as Retry from "@strata/webhooks/Retry"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Received } from "../src/receiver.ts"
import type { LoggedMessage } from "../src/sender.ts"
import * as Sender from "../src/sender.ts"
import { startReceiver, startSender } from "../src/serve.ts"

const host = "127.0.0.1"

/** A temporary DATA_DIR, removed when the test's scope closes. */
const dataDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "strata-webhooks-example-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

// Twenty steps of 200 ms: a delivery is retried for 4 s before it is dead-lettered, long enough for
// the receiver to come back, short enough that nothing waits on a real schedule.
const policy = Retry.make({
  schedule: Array.from({ length: 20 }, () => "200 millis"),
  jitter: 0,
  timeout: "2 seconds"
})

const request = (url: string, init?: RequestInit) => Effect.promise(() => fetch(url, init))

const getJson = <A>(url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    expect(response.status).toBe(200)
    return (await response.json()) as A
  })

const postJson = <A>(url: string, body: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body)
    })
    return { status: response.status, body: (await response.json()) as A }
  })

/** Polls `check` every 50 ms until it gives a value; fails the test after `within` ms. */
const waitFor = <A, E, R>(what: string, check: Effect.Effect<A | undefined, E, R>, within = 10_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + within
    while (Date.now() < deadline) {
      const value = yield* check
      if (value !== undefined) return value
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.die(new Error(`timed out after ${within} ms waiting for ${what}`))
  })

const order = (customer: string, amount: number) => ({
  customer,
  items: [{ sku: "book-42", quantity: 1 }],
  total: { amount, currency: "EUR" }
})

interface Created {
  readonly order: { readonly id: string }
  readonly messageId: string
}

describe("webhooks example", () => {
  it.live(
    "deliveries fail and are rescheduled while the receiver is down, then arrive exactly once",
    () =>
      Effect.gen(function* () {
        const dir = yield* dataDir
        const secret = Signature.generateV1()
        const receiverOptions = { host, secret, inbox: join(dir, "receiver.db") }

        const receiverScope = yield* Scope.make()
        const receiver = yield* Scope.provide(startReceiver({ ...receiverOptions, port: 0 }), receiverScope)
        const receiverPort = Number(new URL(receiver.url).port)

        const sender = yield* startSender({
          host,
          port: 0,
          services: Sender.layerSqlite({
            filename: join(dir, "sender.db"),
            dispatcher: { policy, pollInterval: "100 millis" }
          }),
          csrfKey: Redacted.make(randomBytes(32).toString("base64url"))
        })
        yield* Effect.provideContext(
          Sender.ensureEndpoint("local-receiver", `${receiver.url}/webhooks`, secret),
          sender.context
        )
        const s = sender.url
        const log = getJson<ReadonlyArray<LoggedMessage>>(`${s}/api/deliveries`)
        const deliveryOf = (messageId: string) =>
          Effect.map(log, (messages) => messages.find((m) => m.id === messageId)?.deliveries[0])

        // While the receiver is up: delivered on the first attempt.
        const first = yield* postJson<Created>(`${s}/api/orders`, order("ada@example.com", 1999))
        expect(first.status).toBe(201)
        const delivered = yield* waitFor(
          "the first order's event to be delivered",
          Effect.map(deliveryOf(first.body.messageId), (d) => (d?.state === "delivered" ? d : undefined))
        )
        expect(delivered.attempts.map((a) => [a.status, a.result])).toEqual([[204, "delivered"]])

        // The receiver goes away; three orders and a payment are made meanwhile.
        yield* Scope.close(receiverScope, Exit.void)
        const outage: Array<string> = []
        for (const [customer, amount] of [
          ["bob@example.com", 500],
          ["cy@example.com", 750],
          ["di@example.com", 1200]
        ] as const) {
          const created = yield* postJson<Created>(`${s}/api/orders`, order(customer, amount))
          expect(created.status).toBe(201)
          outage.push(created.body.messageId)
        }
        const paid = yield* postJson<Created>(`${s}/api/orders/${first.body.order.id}/pay`, {})
        expect(paid.status).toBe(200)
        outage.push(paid.body.messageId)

        // Each delivery fails (connection refused: no status) and is rescheduled, again and again.
        const failing = yield* waitFor(
          "every delivery to fail twice and be rescheduled",
          Effect.map(log, (messages) => {
            const deliveries = outage.map((id) => messages.find((m) => m.id === id)?.deliveries[0])
            return deliveries.every((d) => d !== undefined && d.attempts.length >= 2) ? deliveries : undefined
          })
        )
        for (const d of failing) {
          expect(d!.state).toBe("pending")
          expect(d!.nextAttemptAt).not.toBeNull()
          for (const attempt of d!.attempts) {
            expect(attempt.status).toBeNull()
            expect(attempt.error).toMatch(/ECONNREFUSED/)
            expect(attempt.result).toBe("retry")
          }
        }
        const page = yield* Effect.promise(() => fetch(`${s}/deliveries`).then((r) => r.text()))
        for (const id of outage) expect(page).toContain(id)
        expect(page).toContain(`<td class="pending">pending</td>`)
        expect(page).toContain("ECONNREFUSED")

        // The receiver comes back on the same port: the next retries get through.
        yield* startReceiver({ ...receiverOptions, port: receiverPort })
        const all = [first.body.messageId, ...outage]
        const done = yield* waitFor(
          "every delivery to be delivered",
          Effect.map(log, (messages) => {
            const deliveries = all.map((id) => messages.find((m) => m.id === id)?.deliveries[0])
            return deliveries.every((d) => d?.state === "delivered") ? deliveries : undefined
          })
        )
        for (const d of done.slice(1)) {
          const attempts = d!.attempts
          expect(attempts.length).toBeGreaterThanOrEqual(3)
          expect(attempts.at(-1)).toMatchObject({ status: 204, result: "delivered" })
          expect(attempts.slice(0, -1).every((a) => a.result === "retry")).toBe(true)
          expect(d!.nextAttemptAt).toBeNull()
        }

        // Exactly once by webhook-id: every message recorded, none twice, no repeats handled.
        const received = yield* getJson<ReadonlyArray<Received>>(`${receiver.url}/api/received`)
        expect(received.map((r) => r.webhookId).toSorted()).toEqual(all.toSorted())
        expect(received.every((r) => r.duplicates === 0)).toBe(true)
        expect(received.find((r) => r.webhookId === paid.body.messageId)).toMatchObject({
          type: "order.paid",
          data: { orderId: first.body.order.id, total: { amount: 1999, currency: "EUR" } }
        })

        // Manual resends of delivered messages: signed and sent again with the same webhook-id, and
        // never handled twice. The payment went to this receiver instance, whose replay cache
        // acknowledges it (200) without running the handler; the first order went to the instance
        // before the restart, whose memory cache is gone, so the handler runs and the inbox, keyed
        // by webhook-id, counts a repeat instead of recording it again.
        const resend = (messageId: string) =>
          postJson<{ retried: boolean }>(`${s}/api/deliveries/retry`, {
            messageId,
            endpointId: "local-receiver"
          })
        const resentAgain = (messageId: string, attempts: number) =>
          waitFor(
            "the resend to be delivered",
            Effect.map(deliveryOf(messageId), (d) =>
              d?.state === "delivered" && d.attempts.length === attempts ? d : undefined
            )
          )
        const paidAttempts = done.at(-1)!.attempts.length
        expect((yield* resend(paid.body.messageId)).body).toEqual({ retried: true })
        expect((yield* resentAgain(paid.body.messageId, paidAttempts + 1)).attempts.at(-1)?.status).toBe(200)
        expect((yield* resend(first.body.messageId)).body).toEqual({ retried: true })
        expect((yield* resentAgain(first.body.messageId, 2)).attempts.map((a) => a.status)).toEqual([
          204, 204
        ])
        const after = yield* getJson<ReadonlyArray<Received>>(`${receiver.url}/api/received`)
        expect(after.map((r) => r.webhookId).toSorted()).toEqual(all.toSorted())
        expect(after.map((r) => [r.webhookId, r.duplicates]).filter(([, n]) => n !== 0)).toEqual([
          [first.body.messageId, 1]
        ])
      }),
    30_000
  )

  it.live("a tampered delivery gets 401 and is not recorded; the genuine one is", () =>
    Effect.gen(function* () {
      const dir = yield* dataDir
      const secret = Signature.generateV1()
      const receiver = yield* startReceiver({ host, port: 0, secret, inbox: join(dir, "receiver.db") })
      const payload = JSON.stringify({
        type: "order.paid",
        timestamp: new Date().toISOString(),
        data: { orderId: "ord_1", total: { amount: 1999, currency: "EUR" } }
      })
      const deliver = (body: string, id: string, keys: ReadonlyArray<Signature.Secret>) =>
        request(`${receiver.url}/webhooks`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...Signature.sign({ id, timestamp: Math.floor(Date.now() / 1000), payload }, keys)
          },
          body
        })

      // Signed for one body, sent with another: the amount was changed on the way.
      const tampered = yield* deliver(payload.replace("1999", "1"), "msg_tampered", [secret])
      expect(tampered.status).toBe(401)
      expect(yield* Effect.promise(() => tampered.json())).toMatchObject({ error: "InvalidSignature" })
      // Signed with a key the receiver does not know.
      const forged = yield* deliver(payload, "msg_forged", [Signature.generateV1()])
      expect(forged.status).toBe(401)
      // The genuine delivery goes through, so the refusals above are the signature's doing.
      const genuine = yield* deliver(payload, "msg_genuine", [secret])
      expect(genuine.status).toBe(204)

      const received = yield* getJson<ReadonlyArray<Received>>(`${receiver.url}/api/received`)
      expect(received.map((r) => r.webhookId)).toEqual(["msg_genuine"])
      expect(received[0]).toMatchObject({ type: "order.paid", data: { total: { amount: 1999 } } })
    })
  )
})
