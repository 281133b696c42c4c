/**
 * The sender: a shop whose orders emit typed webhook events through the durable outbox, a dispatcher
 * that delivers them through the SSRF guard with retries, and a delivery log (HTML and JSON) with
 * manual retry and recovery. A JSON API for curl, HTML pages with CSRF-protected forms for browsers.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Body, Csrf, HttpError, Logger, RequestId, Route, Router } from "@strata/core"
import { Signature, Ssrf } from "@strata/webhooks"
import * as Dispatcher from "@strata/webhooks/Dispatcher"
import * as Endpoint from "@strata/webhooks/Endpoint"
import * as Outbox from "@strata/webhooks/Outbox"
import * as OutboxPostgres from "@strata/webhooks/OutboxPostgres"
import * as OutboxSqlite from "@strata/webhooks/OutboxSqlite"
import { DatabaseSync } from "node:sqlite"
import { clock, escape, iso, money, page, securityHeaders } from "./html.ts"
import * as OrdersModule from "./Orders.ts"
import { OrderInput, Orders } from "./Orders.ts"

// ---------------------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------------------

/** Everything the sender's routes read. */
export type Services = Outbox.Store | Endpoint.Endpoints | Orders | Dispatcher.Dispatcher

/**
 * The blocked addresses the sender delivers to anyway. The SSRF guard refuses loopback, private, link-local and other
 * special addresses, after DNS resolution, so a registered URL cannot reach into the sender's own
 * network (cloud metadata at 169.254.169.254, an admin port on localhost). The demo's receiver
 * listens on 127.0.0.1, so exactly that address is allowed, and nothing else of the loopback or
 * private ranges; in production allow nothing, or only the private ranges you mean to deliver to.
 * The stores get the same list (`allowEndpoints`), so an endpoint URL the guard would refuse is
 * refused when it is registered, with a reason, rather than failing every attempt later.
 */
export const allow: ReadonlyArray<string> = ["127.0.0.1/32"]

/** The dispatcher's HTTP client, through the SSRF guard with `allow`. */
export const httpClient = Ssrf.layerHttpClient({ allow })

/** Options of the sender's layers. */
export interface LayerOptions {
  /** The dispatcher's options: its retry policy above all (the test passes a schedule of millis). */
  readonly dispatcher?: Dispatcher.Options | undefined
}

const openDatabase = (filename: string) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        const db = new DatabaseSync(filename, { timeout: 5_000 })
        db.exec("PRAGMA journal_mode = WAL")
        // A message survives power loss once `send` returns.
        db.exec("PRAGMA synchronous = FULL")
        return db
      },
      catch: (cause) => new Outbox.StoreError({ cause })
    }),
    (db) => Effect.sync(() => (db.isOpen ? db.close() : undefined))
  )

/**
 * The sender's services on one SQLite file: the outbox, the endpoints and the orders share one
 * connection, so an order and its event commit together; the dispatcher runs in this process.
 */
export const layerSqlite = (
  options: LayerOptions & { readonly filename: string }
): Layer.Layer<Services, Outbox.StoreError> =>
  Layer.unwrap(
    Effect.map(openDatabase(options.filename), (db) =>
      Layer.mergeAll(Dispatcher.layer(options.dispatcher), OrdersModule.layerSqlite(db)).pipe(
        Layer.provideMerge(OutboxSqlite.layer({ database: db, allowEndpoints: allow })),
        Layer.provide(httpClient)
      )
    )
  )

/**
 * The sender's services on Postgres: start several processes on one database and their dispatchers
 * share the work, each delivery leased to one of them at a time.
 */
export const layerPostgres = (
  options: LayerOptions & { readonly url: Redacted.Redacted<string> }
): Layer.Layer<Services, unknown> =>
  Layer.mergeAll(Dispatcher.layer(options.dispatcher), OrdersModule.layerSql).pipe(
    Layer.provideMerge(OutboxPostgres.layer({ allowEndpoints: allow })),
    Layer.provide(PgClient.layer({ url: options.url })),
    Layer.provide(httpClient)
  )

// ---------------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------------

class InvalidEndpoint extends HttpError.Class("InvalidEndpoint", {
  status: 400,
  message: (e: { readonly reason: string }) => e.reason
})<{ readonly reason: string }> {}

class EndpointExists extends HttpError.Class("EndpointExists", {
  status: 409,
  message: "An endpoint with this id exists"
})<{ readonly id: string }> {}

class EndpointNotFound extends HttpError.Class("EndpointNotFound", {
  status: 404,
  message: "No such endpoint"
})<{ readonly id: string }> {}

/** The package's endpoint errors, as answers. */
const endpointErrors = <A, R>(
  effect: Effect.Effect<
    A,
    Endpoint.InvalidEndpoint | Endpoint.EndpointExists | Endpoint.EndpointNotFound | Outbox.StoreError,
    R
  >
) =>
  Effect.catchTags(effect, {
    InvalidEndpoint: (e) => Effect.fail(new InvalidEndpoint({ reason: e.reason })),
    EndpointExists: (e) => Effect.fail(new EndpointExists({ id: e.id })),
    EndpointNotFound: (e) => Effect.fail(new EndpointNotFound({ id: e.id }))
  })

/** Reads a `whsec_…` secret, or makes a fresh one. */
const secretFrom = (text: string | undefined): Effect.Effect<Signature.Secret, InvalidEndpoint> =>
  Effect.try({
    try: () => (text === undefined || text === "" ? Signature.generateV1() : Signature.secretV1(text)),
    catch: (e) => new InvalidEndpoint({ reason: `secret: ${e instanceof Error ? e.message : String(e)}` })
  })

/** The text of a secret: `whsec_…` (or `whsk_…` for an ed25519 key). */
export const secretText = (secret: Signature.Secret): string =>
  secret.version === "v1" ? Redacted.value(secret.key) : Redacted.value(secret.privateKey)

/** An endpoint as the API shows it: everything but its keys. */
const publicEndpoint = (endpoint: Endpoint.Endpoint) => ({
  id: endpoint.id,
  url: endpoint.url,
  eventTypes: endpoint.eventTypes,
  enabled: endpoint.enabled,
  disabledReason: endpoint.disabledReason,
  failingSince: iso(endpoint.failingSince),
  lastSuccessAt: iso(endpoint.lastSuccessAt)
})

/** What registering an endpoint takes. */
export const EndpointInput = Schema.Struct({
  id: Schema.optionalKey(Schema.String),
  url: Schema.String,
  /** The `whsec_…` secret the receiver verifies with; a fresh one when omitted (shown once). */
  secret: Schema.optionalKey(Schema.String),
  eventTypes: Schema.optionalKey(Schema.Array(Schema.String))
})

/** Registers an endpoint; returns it and its secret (the only time the API shows a secret). */
export const register = (input: typeof EndpointInput.Type) =>
  Effect.gen(function* () {
    const secret = yield* secretFrom(input.secret)
    const endpoints = yield* Endpoint.Endpoints
    const endpoint = yield* endpointErrors(
      endpoints.create({ id: input.id, url: input.url, eventTypes: input.eventTypes, keys: [secret] })
    )
    return { endpoint, secret: secretText(secret) }
  })

/**
 * Makes sure the endpoint `id` exists, enabled, at `url`, signing with `secret` (at startup: the
 * receiver may have moved to another port, or been given another secret since).
 */
export const ensureEndpoint = (id: string, url: string, secret: Signature.Secret) =>
  Effect.gen(function* () {
    const endpoints = yield* Endpoint.Endpoints
    const existing = yield* endpoints.get(id).pipe(
      Effect.map(Option.some),
      Effect.catchTag("EndpointNotFound", () => Effect.succeedNone)
    )
    if (Option.isNone(existing)) return yield* endpoints.create({ id, url, keys: [secret] })
    const updated = yield* endpoints.update(id, { url, enabled: true })
    const [current] = Endpoint.activeSecrets(updated.keys, yield* Clock.currentTimeMillis)
    if (current !== undefined && secretText(current) === secretText(secret)) return updated
    // The old key stops signing at once: the receiver knows only the new one.
    return yield* endpoints.rotate(id, { secret, overlap: Duration.zero })
  })

// ---------------------------------------------------------------------------------------------------
// The delivery log
// ---------------------------------------------------------------------------------------------------

/** One attempt in the log. */
export interface LoggedAttempt {
  readonly attempt: number
  /** The response status, `null` when there was none (refused connection, timeout, SSRF refusal). */
  readonly status: number | null
  readonly durationMs: number
  readonly startedAt: string
  readonly error: string | null
  /** The first 4 KiB of the response body: what a refusing receiver said. */
  readonly responseBody: string
  readonly result: Outbox.Attempt["result"]
}

/** One message's delivery to one endpoint in the log. */
export interface LoggedDelivery {
  readonly endpointId: string
  readonly url: string | null
  readonly state: Outbox.DeliveryState
  /** When the next attempt is due; `null` once the delivery has ended. */
  readonly nextAttemptAt: string | null
  readonly attempts: ReadonlyArray<LoggedAttempt>
}

/** One message in the log: the event it carries and its deliveries. */
export interface LoggedMessage {
  readonly id: string
  readonly type: string
  readonly createdAt: string | null
  readonly payload: unknown
  readonly deliveries: ReadonlyArray<LoggedDelivery>
}

/** The newest messages (by their deliveries' last change) with every delivery and attempt. */
export const deliveryLog = (limit = 50) =>
  Effect.gen(function* () {
    const store = yield* Outbox.Store
    const urls = new Map((yield* store.endpoints.list).map((e) => [e.id, e.url]))
    const byMessage = new Map<string, Array<Outbox.Delivery>>()
    for (const delivery of yield* Outbox.deliveries({ limit: 1000 })) {
      const list = byMessage.get(delivery.messageId)
      if (list !== undefined) list.push(delivery)
      else if (byMessage.size < limit) byMessage.set(delivery.messageId, [delivery])
    }
    const messages = yield* Effect.forEach([...byMessage], ([id, deliveries]) =>
      Effect.gen(function* () {
        const message = Option.getOrUndefined(yield* store.message(id))
        const logged = yield* Effect.forEach(deliveries, (delivery) =>
          Effect.map(Outbox.attempts(delivery), (attempts): LoggedDelivery => ({
            endpointId: delivery.endpointId,
            url: urls.get(delivery.endpointId) ?? null,
            state: delivery.state,
            nextAttemptAt: delivery.state === "pending" ? iso(delivery.nextAt) : null,
            attempts: attempts.map((a) => ({
              attempt: a.attempt,
              status: a.status,
              durationMs: a.durationMs,
              startedAt: iso(a.startedAt)!,
              error: a.error,
              responseBody: a.responseBody,
              result: a.result
            }))
          }))
        )
        return {
          id,
          type: message?.eventType ?? deliveries[0]!.eventType,
          createdAt: iso(message?.createdAt ?? null),
          payload: message === undefined ? null : (JSON.parse(message.payload) as unknown),
          deliveries: logged
        } satisfies LoggedMessage
      })
    )
    return messages.toSorted((a, b) => (b.createdAt ?? "").localeCompare(a.createdAt ?? ""))
  })

/** What `POST /api/deliveries/retry` takes. */
const DeliveryKey = Schema.Struct({ messageId: Schema.String, endpointId: Schema.String })

/** What `POST /api/recover` takes: deliveries that ended `failed`/`disabled` since `since` (default: a day). */
const RecoverInput = Schema.Struct({
  since: Schema.optionalKey(Schema.String),
  endpointId: Schema.optionalKey(Schema.String)
})

class InvalidSince extends HttpError.Class("InvalidSince", {
  status: 400,
  message: "since: expected an ISO 8601 date-time"
})<{}> {}

const recover = (input: typeof RecoverInput.Type) =>
  Effect.gen(function* () {
    const since =
      input.since === undefined ? (yield* Clock.currentTimeMillis) - 24 * 3600_000 : Date.parse(input.since)
    if (Number.isNaN(since)) return yield* new InvalidSince()
    return yield* Outbox.recover({ since, endpointId: input.endpointId })
  })

// ---------------------------------------------------------------------------------------------------
// JSON API
// ---------------------------------------------------------------------------------------------------

const param = (name: string) => Effect.map(HttpRouter.params, (params) => params[name] ?? "")

const json = (body: unknown, status = 200) => HttpServerResponse.jsonUnsafe(body, { status })

const api = Router.group("/api", [
  Route.get(
    "/orders",
    Effect.map(
      Effect.flatMap(Effect.service(Orders), (orders) => orders.list),
      (list) => json(list)
    )
  ),
  Route.post(
    "/orders",
    Effect.gen(function* () {
      const input = yield* Body.json(OrderInput)
      return json(yield* (yield* Orders).create(input), 201)
    })
  ),
  Route.post(
    "/orders/:id/pay",
    Effect.gen(function* () {
      // An empty JSON object, so a cross-site form cannot post it (forms cannot send JSON).
      yield* Body.json(Schema.Struct({}))
      return json(yield* (yield* Orders).pay(yield* param("id")))
    })
  ),
  Route.post(
    "/orders/:id/refund",
    Effect.gen(function* () {
      const { reason } = yield* Body.json(
        Schema.Struct({ reason: Schema.String.check(Schema.isMaxLength(500)) })
      )
      return json(yield* (yield* Orders).refund(yield* param("id"), reason))
    })
  ),
  Route.get(
    "/endpoints",
    Effect.gen(function* () {
      return json((yield* (yield* Endpoint.Endpoints).list).map(publicEndpoint))
    })
  ),
  Route.post(
    "/endpoints",
    Effect.gen(function* () {
      const { endpoint, secret } = yield* register(yield* Body.json(EndpointInput))
      return json({ ...publicEndpoint(endpoint), secret }, 201)
    })
  ),
  Route.del(
    "/endpoints/:id",
    Effect.gen(function* () {
      yield* endpointErrors((yield* Endpoint.Endpoints).remove(yield* param("id")))
      return HttpServerResponse.empty({ status: 204 })
    })
  ),
  Route.get(
    "/deliveries",
    Effect.map(deliveryLog(), (messages) => json(messages))
  ),
  Route.post(
    "/deliveries/retry",
    Effect.gen(function* () {
      const key = yield* Body.json(DeliveryKey)
      // False when there is no such delivery or it is still pending (its retries are scheduled).
      return json({ retried: yield* Outbox.retry(key) })
    })
  ),
  Route.post(
    "/recover",
    Effect.gen(function* () {
      return json({ recovered: yield* recover(yield* Body.json(RecoverInput)) })
    })
  ),
  Route.get(
    "/stats",
    Effect.map(
      Effect.flatMap(Effect.service(Dispatcher.Dispatcher), (d) => d.stats),
      (stats) => json(stats)
    )
  )
])

// ---------------------------------------------------------------------------------------------------
// HTML pages
// ---------------------------------------------------------------------------------------------------

const redirect = (to: string) => HttpServerResponse.redirect(to, { status: 303 })

const button = (token: string, action: string, label: string, fields: Record<string, string> = {}) =>
  `<form class="inline" method="post" action="${escape(action)}">${Csrf.hiddenInput(token)}` +
  Object.entries(fields)
    .map(([name, value]) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`)
    .join("") +
  `<button>${escape(label)}</button></form>`

const home = Route.get(
  "/",
  Effect.gen(function* () {
    const token = yield* Csrf.token
    const orders = yield* (yield* Orders).list
    const endpoints = yield* (yield* Endpoint.Endpoints).list
    const orderRows = orders
      .map(
        (o) =>
          `<tr><td><code>${escape(o.id)}</code></td><td>${escape(o.customer)}</td>` +
          `<td>${escape(o.items.map((i) => `${i.quantity}× ${i.sku}`).join(", "))}</td>` +
          `<td>${escape(money(o.total))}</td><td>${escape(o.status)}</td><td>` +
          (o.status === "created" ? button(token, `/orders/${o.id}/pay`, "Pay") : "") +
          (o.status === "paid" ? button(token, `/orders/${o.id}/refund`, "Refund") : "") +
          `</td></tr>`
      )
      .join("")
    const endpointRows = endpoints
      .map(
        (e) =>
          `<tr><td><code>${escape(e.id)}</code></td><td>${escape(e.url)}</td>` +
          `<td>${escape(e.eventTypes.join(", "))}</td>` +
          `<td>${e.enabled ? "enabled" : `disabled (${escape(e.disabledReason ?? "")})`}</td></tr>`
      )
      .join("")
    return page(
      "Webhooks sender",
      `<h1>Shop (webhook sender)</h1><p><a href="/deliveries">Delivery log</a></p>` +
        `<h2>New order</h2><form method="post" action="/orders">${Csrf.hiddenInput(token)}` +
        `<input name="customer" placeholder="customer" required value="ada@example.com"> ` +
        `<input name="sku" placeholder="sku" required value="book-42"> ` +
        `<input name="quantity" type="number" min="1" value="1" required> ` +
        `<input name="amount" type="number" min="1" value="1999" required title="cents"> ` +
        `<select name="currency"><option>EUR</option><option>USD</option><option>GBP</option></select> ` +
        `<button>Create</button></form>` +
        `<h2>Orders</h2><table><tr><th>id</th><th>customer</th><th>items</th><th>total</th><th>status</th><th></th></tr>` +
        `${orderRows}</table>` +
        `<h2>Endpoints</h2><table><tr><th>id</th><th>url</th><th>events</th><th>state</th></tr>${endpointRows}</table>` +
        `<form method="post" action="/endpoints">${Csrf.hiddenInput(token)}` +
        `<input name="url" placeholder="http://127.0.0.1:3101/webhooks" required size="40"> ` +
        `<input name="secret" placeholder="whsec_… (empty: make one)" size="40"> <button>Register</button></form>`
    )
  })
)

const OrderForm = Schema.Struct({
  customer: Schema.String,
  sku: Schema.String,
  quantity: Schema.NumberFromString,
  amount: Schema.NumberFromString,
  currency: Schema.String
})

const createFromForm = Route.post(
  "/orders",
  Effect.gen(function* () {
    const form = yield* Body.form(OrderForm)
    const input = yield* Schema.decodeUnknownEffect(OrderInput)({
      customer: form.customer,
      items: [{ sku: form.sku, quantity: form.quantity }],
      total: { amount: form.amount, currency: form.currency }
    }).pipe(Effect.mapError(HttpError.fromSchemaError))
    yield* (yield* Orders).create(input)
    return redirect("/")
  })
)

const payFromForm = Route.post(
  "/orders/:id/pay",
  Effect.gen(function* () {
    yield* (yield* Orders).pay(yield* param("id"))
    return redirect("/")
  })
)

const refundFromForm = Route.post(
  "/orders/:id/refund",
  Effect.gen(function* () {
    yield* (yield* Orders).refund(yield* param("id"), "refunded from the shop page")
    return redirect("/")
  })
)

const registerFromForm = Route.post(
  "/endpoints",
  Effect.gen(function* () {
    const form = yield* Body.form(Schema.Struct({ url: Schema.String, secret: Schema.String }))
    const { endpoint, secret } = yield* register(form.secret === "" ? { url: form.url } : form)
    return page(
      "Endpoint registered",
      `<h1>Endpoint registered</h1><p><code>${escape(endpoint.id)}</code> → ${escape(endpoint.url)}</p>` +
        `<p>Its signing secret (shown this once): <code>${escape(secret)}</code></p><p><a href="/">Back</a></p>`
    )
  })
)

const stateClass = (state: string) => `class="${escape(state)}"`

const attemptText = (a: LoggedAttempt) => {
  const failed = a.status === null || a.status < 200 || a.status > 299
  const said = a.status === null ? (a.error ?? "no response") : failed ? a.responseBody.slice(0, 120) : ""
  return (
    `#${a.attempt} ${a.status ?? "–"} <span class="muted">${a.durationMs} ms at ${escape(a.startedAt.slice(11, 23))}` +
    ` → ${escape(a.result)}</span>${said === "" ? "" : `<br><small>${escape(said)}</small>`}`
  )
}

const deliveriesPage = Route.get(
  "/deliveries",
  Effect.gen(function* () {
    const token = yield* Csrf.token
    const messages = yield* deliveryLog()
    const stats = yield* (yield* Dispatcher.Dispatcher).stats
    const rows = messages
      .flatMap((m) =>
        m.deliveries.map(
          (d, i) =>
            `<tr>` +
            (i === 0
              ? `<td rowspan="${m.deliveries.length}"><code>${escape(m.id)}</code><br>${escape(m.type)}` +
                `<br><span class="muted">${escape(m.createdAt?.slice(11, 23) ?? "")}</span></td>`
              : "") +
            `<td><code>${escape(d.endpointId)}</code><br><span class="muted">${escape(d.url ?? "")}</span></td>` +
            `<td ${stateClass(d.state)}>${escape(d.state)}</td>` +
            `<td>${d.attempts.map(attemptText).join("<br>") || `<span class="muted">none yet</span>`}</td>` +
            `<td>${escape(d.nextAttemptAt === null ? "–" : clock(Date.parse(d.nextAttemptAt)))}</td>` +
            `<td>${d.state === "pending" ? "" : button(token, "/deliveries/retry", d.state === "delivered" ? "Resend" : "Retry", { messageId: m.id, endpointId: d.endpointId })}</td>` +
            `</tr>`
        )
      )
      .join("")
    return page(
      "Delivery log",
      `<h1>Delivery log</h1><p><a href="/">Shop</a> · <a href="/api/deliveries">JSON</a> · ` +
        `dispatcher <code>${escape(stats.owner)}</code>: ${stats.attempts} attempts, ${stats.delivered} delivered, ` +
        `${stats.retried} rescheduled, ${stats.failed} dead-lettered, ${stats.inFlight} in flight. ` +
        `Times are UTC; this page reloads every 2 s.</p>` +
        `<form method="post" action="/deliveries/recover">${Csrf.hiddenInput(token)}` +
        `<button>Recover</button> re-send once every delivery that failed or was disabled in the last 24 hours</form>` +
        `<table><tr><th>message</th><th>endpoint</th><th>state</th><th>attempts</th><th>next attempt</th><th></th></tr>` +
        `${rows}</table>`,
      { refresh: 2 }
    )
  })
)

const retryFromForm = Route.post(
  "/deliveries/retry",
  Effect.gen(function* () {
    yield* Outbox.retry(yield* Body.form(DeliveryKey))
    return redirect("/deliveries")
  })
)

const recoverFromForm = Route.post(
  "/deliveries/recover",
  Effect.gen(function* () {
    yield* recover({})
    return redirect("/deliveries")
  })
)

// ---------------------------------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------------------------------

/**
 * The sender's routes. `csrfKey` signs the cookie that carries the forms' CSRF token.
 *
 * The API and the pages have no login: bind the sender to 127.0.0.1 (the default) or put one in
 * front. The JSON API's writes take JSON bodies, which a cross-site form cannot send; the pages'
 * forms carry a CSRF token.
 */
export const makeApp = (csrfKey: Redacted.Redacted<string>) =>
  Router.make([
    api,
    Router.group("", [
      home,
      createFromForm,
      payFromForm,
      refundFromForm,
      registerFromForm,
      deliveriesPage,
      retryFromForm,
      recoverFromForm
    ]).pipe(
      // Plain http://127.0.0.1 in the demo: the cookie cannot be `Secure`.
      Router.use(Csrf.doubleSubmit({ keys: [csrfKey], cookie: { secure: false } }))
    )
  ]).pipe(
    Router.catchTags({
      OutboxStoreError: (e) =>
        Effect.as(
          Effect.logError("the store failed", e.cause),
          HttpServerResponse.jsonUnsafe(
            {
              error: "StoreUnavailable",
              message: "The store did not answer; try again"
            },
            { status: 503 }
          )
        )
    }),
    Router.use(RequestId.middleware(), Logger.middleware(), securityHeaders)
  )
