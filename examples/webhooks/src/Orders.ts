/**
 * The sender's orders, kept in the outbox's own database so that an order change and the event it
 * emits commit in one transaction: there is never an order without its event, nor an event for an
 * order that was rolled back. SQLite (the outbox's file) by default, Postgres with `DATABASE_URL`.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as SqlClient from "effect/sql/SqlClient"
import { HttpError } from "@strata/core"
import { Catalog } from "@strata/webhooks"
import * as Outbox from "@strata/webhooks/Outbox"
import { randomBytes } from "node:crypto"
import type { DatabaseSync } from "node:sqlite"
import { events, Item, Money } from "./catalog.ts"

/** Where an order stands. */
export type Status = "created" | "paid" | "refunded"

/** An order as stored. */
export interface Order {
  readonly id: string
  readonly customer: string
  readonly items: ReadonlyArray<typeof Item.Type>
  readonly total: typeof Money.Type
  readonly status: Status
  readonly createdAt: number
  readonly updatedAt: number
}

/** What `POST /api/orders` takes. */
export const OrderInput = Schema.Struct({
  customer: Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(200)),
  items: Schema.NonEmptyArray(Item).check(Schema.isMaxLength(100)),
  total: Money
})

/** What changed, and the id of the webhook message it emitted (its `webhook-id`). */
export interface Changed {
  readonly order: Order
  readonly messageId: string
}

/** No order has this id. */
export class OrderNotFound extends HttpError.Class("OrderNotFound", {
  status: 404,
  message: "No such order"
})<{ readonly id: string }> {}

/** Only a created order can be paid, and only a paid one refunded. */
export class InvalidTransition extends HttpError.Class("InvalidTransition", {
  status: 409,
  message: (e: { readonly current: Status; readonly to: Status }) =>
    `A ${e.current} order cannot become ${e.to}`
})<{ readonly id: string; readonly current: Status; readonly to: Status }> {}

/** The orders. Every change emits its event through the outbox, in the same transaction. */
export class Orders extends Context.Service<
  Orders,
  {
    readonly list: Effect.Effect<ReadonlyArray<Order>, Outbox.StoreError>
    readonly create: (input: typeof OrderInput.Type) => Effect.Effect<Changed, Outbox.StoreError>
    readonly pay: (
      id: string
    ) => Effect.Effect<Changed, OrderNotFound | InvalidTransition | Outbox.StoreError>
    readonly refund: (
      id: string,
      reason: string
    ) => Effect.Effect<Changed, OrderNotFound | InvalidTransition | Outbox.StoreError>
  }
>()("example-webhooks/Orders") {}

const table = "shop_orders"

const newId = () => `ord_${randomBytes(9).toString("base64url")}`

type Events = Catalog.EventsOf<typeof events>

// What a transition does to an order, and the event it emits.
const transition = (order: Order, to: "paid" | "refunded", reason: string, now: number) => {
  const from: Status = to === "paid" ? "created" : "paid"
  if (order.status !== from) return new InvalidTransition({ id: order.id, current: order.status, to })
  const next: Order = { ...order, status: to, updatedAt: now }
  return to === "paid"
    ? { next, type: "order.paid" as const, data: { orderId: order.id, total: order.total } }
    : { next, type: "order.refunded" as const, data: { orderId: order.id, refunded: order.total, reason } }
}

interface Row {
  readonly id: string
  readonly customer: string
  readonly items: string
  readonly amount: number | string
  readonly currency: string
  readonly status: string
  readonly created_at: number | string
  readonly updated_at: number | string
}

const decodeRow = (row: Row): Order => ({
  id: row.id,
  customer: row.customer,
  items: JSON.parse(row.items) as Order["items"],
  total: { amount: Number(row.amount), currency: row.currency as Order["total"]["currency"] },
  status: row.status as Status,
  createdAt: Number(row.created_at),
  updatedAt: Number(row.updated_at)
})

const columns = (order: Order) =>
  [
    order.id,
    order.customer,
    JSON.stringify(order.items),
    order.total.amount,
    order.total.currency,
    order.status,
    order.createdAt,
    order.updatedAt
  ] as const

const createTable = (bigint: string) => `
  CREATE TABLE IF NOT EXISTS ${table} (
    id TEXT PRIMARY KEY NOT NULL,
    customer TEXT NOT NULL,
    items TEXT NOT NULL,
    amount ${bigint} NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at ${bigint} NOT NULL,
    updated_at ${bigint} NOT NULL
  )`

const storeError = (cause: unknown) => new Outbox.StoreError({ cause })

/**
 * Orders in the SQLite file the outbox uses (`db`, also given to `OutboxSqlite.layer({ database })`).
 */
export const layerSqlite = (db: DatabaseSync): Layer.Layer<Orders, Outbox.StoreError, Outbox.Store> =>
  Layer.effect(Orders)(
    Effect.gen(function* () {
      const store = yield* Outbox.Store
      const statements = yield* Effect.try({
        try: () => {
          db.exec(createTable("INTEGER"))
          return {
            list: db.prepare(`SELECT * FROM ${table} ORDER BY created_at DESC, id LIMIT 200`),
            get: db.prepare(`SELECT * FROM ${table} WHERE id = ?`),
            insert: db.prepare(`INSERT INTO ${table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
            setStatus: db.prepare(`UPDATE ${table} SET status = ?, updated_at = ? WHERE id = ?`)
          }
        },
        catch: storeError
      })

      // A send made while the connection is inside a transaction is written by the outbox as part of
      // it, synchronously; so is everything else here. From BEGIN to COMMIT no other fiber runs, and
      // nothing else on this connection (the dispatcher's leases and attempt records) can land inside
      // an order's transaction — which is why running the send synchronously is sound here. It runs
      // with the calling fiber's services, so the outbox reads the same clock (a TestClock in tests).
      const emitWith =
        (context: Context.Context<never>) =>
        <K extends Catalog.Type<Events>>(type: K, data: Catalog.Data<Events, K>, now: number) =>
          Effect.runSyncWith(context)(
            store.send({
              eventType: type,
              payload: Catalog.encode(events, type, data, { timestamp: new Date(now) })
            })
          ).id
      type Emit = ReturnType<typeof emitWith>

      const transact = <A>(f: (now: number, emit: Emit) => A): Effect.Effect<A, Outbox.StoreError> =>
        Effect.flatMap(Effect.zip(Effect.context<never>(), Clock.currentTimeMillis), ([context, now]) =>
          Effect.try({
            try: () => {
              db.exec("BEGIN IMMEDIATE")
              try {
                const result = f(now, emitWith(context))
                db.exec("COMMIT")
                return result
              } catch (error) {
                if (db.isTransaction) db.exec("ROLLBACK")
                throw error
              }
            },
            catch: storeError
          })
        )

      const move = (id: string, to: "paid" | "refunded", reason: string) =>
        Effect.flatMap(
          transact((now, emit): Changed | OrderNotFound | InvalidTransition => {
            const row = statements.get.get(id) as Row | undefined
            if (row === undefined) return new OrderNotFound({ id })
            const step = transition(decodeRow(row), to, reason, now)
            if (step instanceof InvalidTransition) return step
            statements.setStatus.run(step.next.status, now, id)
            const messageId =
              step.type === "order.paid" ? emit(step.type, step.data, now) : emit(step.type, step.data, now)
            return { order: step.next, messageId }
          }),
          (result) =>
            result instanceof OrderNotFound || result instanceof InvalidTransition
              ? Effect.fail(result)
              : Effect.succeed(result)
        )

      return Orders.of({
        list: Effect.try({
          try: () => (statements.list.all() as Array<unknown>).map((row) => decodeRow(row as Row)),
          catch: storeError
        }),
        create: (input) =>
          transact((now, emit) => {
            const order: Order = { id: newId(), ...input, status: "created", createdAt: now, updatedAt: now }
            statements.insert.run(...columns(order))
            const messageId = emit("order.created", { orderId: order.id, ...input }, now)
            return { order, messageId }
          }),
        pay: (id) => move(id, "paid", ""),
        refund: (id, reason) => move(id, "refunded", reason)
      })
    })
  )

/**
 * Orders in Postgres through `effect/sql`, beside `OutboxPostgres`: the outbox's `send` inside
 * `sql.withTransaction` joins the transaction.
 */
export const layerSql: Layer.Layer<Orders, Outbox.StoreError, Outbox.Store | SqlClient.SqlClient> =
  Layer.effect(Orders)(
    Effect.gen(function* () {
      const store = yield* Outbox.Store
      const sql = yield* SqlClient.SqlClient
      const query = (text: string, params: ReadonlyArray<unknown> = []) =>
        Effect.mapError(sql.unsafe<Row>(text, params), storeError)
      const transact = <A, E>(effect: Effect.Effect<A, E>) =>
        Effect.mapError(sql.withTransaction(effect), (error) =>
          error instanceof OrderNotFound ||
          error instanceof InvalidTransition ||
          error instanceof Outbox.StoreError
            ? error
            : storeError(error)
        )
      yield* transact(
        Effect.gen(function* () {
          // Several nodes start at once: CREATE TABLE IF NOT EXISTS races with itself across sessions.
          yield* query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`example-webhooks:${table}`])
          yield* query(createTable("BIGINT"))
        })
      )

      const emit = <K extends Catalog.Type<Events>>(type: K, data: Catalog.Data<Events, K>) =>
        Effect.map(
          Effect.provideService(Outbox.send(events, type, data), Outbox.Store, store).pipe(
            // The Schemas' checks were applied to the request already: failing here is a bug.
            Effect.catchTag("SchemaError", Effect.die)
          ),
          (sent) => sent.id
        )

      const move = (id: string, to: "paid" | "refunded", reason: string) =>
        transact(
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const [row] = yield* query(`SELECT * FROM ${table} WHERE id = $1 FOR UPDATE`, [id])
            if (row === undefined) return yield* new OrderNotFound({ id })
            const step = transition(decodeRow(row), to, reason, now)
            if (step instanceof InvalidTransition) return yield* step
            yield* query(`UPDATE ${table} SET status = $1, updated_at = $2 WHERE id = $3`, [to, now, id])
            const messageId = yield* step.type === "order.paid"
              ? emit(step.type, step.data)
              : emit(step.type, step.data)
            return { order: step.next, messageId }
          })
        )

      return Orders.of({
        list: Effect.map(query(`SELECT * FROM ${table} ORDER BY created_at DESC, id LIMIT 200`), (rows) =>
          rows.map(decodeRow)
        ),
        create: (input) =>
          transact(
            Effect.gen(function* () {
              const now = yield* Clock.currentTimeMillis
              const order: Order = {
                id: newId(),
                ...input,
                status: "created",
                createdAt: now,
                updatedAt: now
              }
              yield* query(`INSERT INTO ${table} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, columns(order))
              const messageId = yield* emit("order.created", { orderId: order.id, ...input })
              return { order, messageId }
            })
          ),
        pay: (id) => move(id, "paid", ""),
        refund: (id, reason) => move(id, "refunded", reason)
      })
    })
  )
