/**
 * The receiver: verifies each delivery (Standard Webhooks signature over the raw body, timestamp
 * within 5 minutes, replays refused), gets it as a typed event of the shared catalog, and records it
 * once per `webhook-id` in SQLite. Shows what it received at `/` (HTML) and `/api/received` (JSON).
 */
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { HttpError, Logger, RequestId, Route, Router } from "@strata/core"
import { Receiver, type Signature } from "@strata/webhooks"
import * as ReplayCacheRedis from "@strata/webhooks/ReplayCacheRedis"
import { DatabaseSync } from "node:sqlite"
import { events, type OrderEvent } from "./catalog.ts"
import { clock, escape, iso, money, page, securityHeaders } from "./html.ts"

/** The event of the current delivery, decoded by the catalog: read it with `yield* OrderHook`. */
export class OrderHook extends Receiver.Event<OrderHook>()("example-webhooks/OrderHook", events) {}

/** One delivery as the receiver recorded it. */
export interface Received {
  readonly webhookId: string
  readonly type: string
  readonly data: unknown
  /** The event's own time (the envelope's `timestamp`). */
  readonly eventTime: string
  /** When the sender signed the attempt that got through (`webhook-timestamp`). */
  readonly signedAt: string
  readonly receivedAt: string
  readonly summary: string
  /**
   * How often the same `webhook-id` came again after it was recorded and was not handled again.
   * The replay cache answers most such retries; this catches those it no longer remembers (after a
   * restart of the receiver, or past its window).
   */
  readonly duplicates: number
}

/** The inbox could not be written or read: 503, so the sender retries. */
export class InboxUnavailable extends HttpError.Class("InboxUnavailable", {
  status: 503,
  message: "The delivery could not be recorded; retry later"
})<{ readonly cause: unknown }> {}

/** Where the receiver records deliveries. */
export class Inbox extends Context.Service<
  Inbox,
  {
    /** Records a delivery; `false` when its `webhook-id` was recorded before (nothing else is done). */
    readonly record: (
      received: Omit<Received, "duplicates" | "receivedAt">
    ) => Effect.Effect<boolean, InboxUnavailable>
    readonly list: Effect.Effect<ReadonlyArray<Received>, InboxUnavailable>
  }
>()("example-webhooks/Inbox") {}

interface Row {
  readonly webhook_id: string
  readonly type: string
  readonly data: string
  readonly event_time: string
  readonly signed_at: number
  readonly received_at: number
  readonly summary: string
  readonly duplicates: number
}

/** The inbox in a SQLite file (`":memory:"` for one that lives as long as the layer). */
export const layerInbox = (filename: string): Layer.Layer<Inbox, InboxUnavailable> =>
  Layer.effect(Inbox)(
    Effect.gen(function* () {
      const db = yield* Effect.acquireRelease(
        Effect.try({
          try: () => {
            const opened = new DatabaseSync(filename, { timeout: 5_000 })
            if (filename !== ":memory:") opened.exec("PRAGMA journal_mode = WAL")
            opened.exec(`CREATE TABLE IF NOT EXISTS received (
              webhook_id TEXT PRIMARY KEY NOT NULL,
              type TEXT NOT NULL,
              data TEXT NOT NULL,
              event_time TEXT NOT NULL,
              signed_at INTEGER NOT NULL,
              received_at INTEGER NOT NULL,
              summary TEXT NOT NULL,
              duplicates INTEGER NOT NULL DEFAULT 0
            )`)
            return opened
          },
          catch: (cause) => new InboxUnavailable({ cause })
        }),
        (opened) => Effect.sync(() => (opened.isOpen ? opened.close() : undefined))
      )
      const insert = db.prepare(
        `INSERT INTO received (webhook_id, type, data, event_time, signed_at, received_at, summary)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (webhook_id) DO UPDATE SET duplicates = duplicates + 1
         RETURNING duplicates`
      )
      const list = db.prepare(`SELECT * FROM received ORDER BY received_at DESC, webhook_id LIMIT 500`)
      return Inbox.of({
        record: (r) =>
          Effect.try({
            try: () => {
              const row = insert.get(
                r.webhookId,
                r.type,
                JSON.stringify(r.data),
                r.eventTime,
                Date.parse(r.signedAt),
                Date.now(),
                r.summary
              ) as { duplicates: number }
              return Number(row.duplicates) === 0
            },
            catch: (cause) => new InboxUnavailable({ cause })
          }),
        list: Effect.try({
          try: () =>
            (list.all() as Array<unknown>).map((raw) => {
              const row = raw as Row
              return {
                webhookId: row.webhook_id,
                type: row.type,
                data: JSON.parse(row.data) as unknown,
                eventTime: row.event_time,
                signedAt: iso(Number(row.signed_at))!,
                receivedAt: iso(Number(row.received_at))!,
                summary: row.summary,
                duplicates: Number(row.duplicates)
              }
            }),
          catch: (cause) => new InboxUnavailable({ cause })
        })
      })
    })
  )

/**
 * The replay cache: in memory, or in Redis when `redisUrl` is given, so several receiver instances
 * behind one URL refuse a delivery id any of them accepted.
 */
export const layerReplayCache = (
  redisUrl?: string | undefined
): Layer.Layer<Receiver.ReplayCache, Receiver.ReplayCacheUnavailable> =>
  redisUrl === undefined || redisUrl === ""
    ? Receiver.layerMemory()
    : ReplayCacheRedis.layerFromUrl(redisUrl, { prefix: "example-webhooks:" })

/** One line about the event; the `switch` narrows `data` by `type`. */
const summarize = (event: OrderEvent): string => {
  switch (event.type) {
    case "order.created":
      return `${event.data.customer} ordered ${event.data.items.map((i) => `${i.quantity}× ${i.sku}`).join(", ")} for ${money(event.data.total)}`
    case "order.paid":
      return `${event.data.orderId} paid ${money(event.data.total)}`
    case "order.refunded":
      return `${event.data.orderId} refunded ${money(event.data.refunded)}: ${event.data.reason}`
  }
}

const receive = Route.post(
  "/webhooks",
  Effect.gen(function* () {
    const event = yield* OrderHook
    const delivery = yield* Receiver.Delivery
    const first = yield* (yield* Inbox).record({
      webhookId: delivery.id,
      type: event.type,
      data: event.data,
      eventTime: DateTime.formatIso(event.timestamp),
      signedAt: iso(delivery.timestamp * 1000)!,
      summary: summarize(event)
    })
    // Here a real receiver would act on the event, once: only when `first`.
    yield* Effect.logInfo(first ? "webhook received" : "webhook received again; already handled").pipe(
      Effect.annotateLogs({ webhookId: delivery.id, type: event.type })
    )
    return HttpServerResponse.empty({ status: 204 })
  })
)

const receivedJson = Route.get(
  "/api/received",
  Effect.map(
    Effect.flatMap(Effect.service(Inbox), (inbox) => inbox.list),
    (list) => HttpServerResponse.jsonUnsafe(list)
  )
)

const receivedPage = Route.get(
  "/",
  Effect.gen(function* () {
    const list = yield* (yield* Inbox).list
    const rows = list
      .map(
        (r) =>
          `<tr><td><code>${escape(r.webhookId)}</code></td><td>${escape(r.type)}</td><td>${escape(r.summary)}</td>` +
          `<td>${escape(clock(Date.parse(r.receivedAt)))}</td><td>${r.duplicates}</td></tr>`
      )
      .join("")
    return page(
      "Webhooks receiver",
      `<h1>Received webhooks</h1><p>${list.length} events, each recorded once by its <code>webhook-id</code>. ` +
        `<a href="/api/received">JSON</a> · times are UTC · this page reloads every 2 s.</p>` +
        `<table><tr><th>webhook-id</th><th>type</th><th>event</th><th>received</th><th>repeats</th></tr>${rows}</table>`,
      { refresh: 2 }
    )
  })
)

/**
 * The receiver's routes: `POST /webhooks` verified with `secret` (the same `whsec_…` the sender
 * signs with), and the pages. A retry of a delivery already handled is acknowledged with 200 and not
 * handled again, so a sender whose first 2xx was lost stops retrying.
 */
export const makeApp = (secret: Signature.Secret) =>
  Router.make([
    Router.group("", [receive]).pipe(
      Router.use(
        Receiver.middleware(OrderHook, {
          scheme: Receiver.standardWebhooks([secret]),
          onDuplicate: "acknowledge"
        })
      )
    ),
    receivedJson,
    receivedPage
  ]).pipe(Router.use(RequestId.middleware(), Logger.middleware(), securityHeaders))
