/**
 * The outbox store in SQLite on Node 24's built-in `node:sqlite` (a file in WAL mode, no native
 * build): the default store, for one dispatcher process or a few processes on one machine.
 * It also keeps the endpoints, and provides `Endpoint.Endpoints`.
 *
 * Concurrent `send`s are written in one transaction (group commit), so with `synchronous = FULL` (the
 * default: a message survives power loss once `send` returns) a busy application pays one fsync per
 * batch, not per message. A `send` made while the connection is inside the application's own
 * transaction (pass your `DatabaseSync` as `database`) is written inside that transaction instead: the
 * message exists if and only if the application's writes commit.
 *
 * Why not `effect/sql`: its Effect 4 SQLite driver is only a beta, and synchronous statements in one
 * place are what makes the store's transactions short.
 *
 * @since 0.1.0
 */
import { DatabaseSync, type SQLInputValue } from "node:sqlite"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Endpoint from "./Endpoint.ts"
import * as Outbox from "./Outbox.ts"
import * as Store from "./internal/store.ts"

/**
 * Options of the SQLite store. `allowEndpoints` (from `Endpoint.Options`) is passed to the
 * `Endpoints` service: the blocked addresses endpoint URLs may point at.
 *
 * @category models
 */
export interface Options extends Endpoint.Options {
  /** A file path (opened in WAL mode), or `":memory:"` for a store that lives as long as the layer. */
  readonly filename?: string | undefined
  /**
   * An open database to use instead of `filename` (the application's own, for a transactional
   * outbox). The layer does not close it.
   */
  readonly database?: DatabaseSync | undefined
  /** Prefix of the store's tables; default `webhook_`. Must match `[A-Za-z_][A-Za-z0-9_]*`. */
  readonly tablePrefix?: string | undefined
  /** SQLite's `synchronous` setting: `FULL` (default, durable across power loss) or `NORMAL` (across process crashes). */
  readonly synchronous?: "FULL" | "NORMAL" | undefined
  /** How long an idempotency key dedupes; default 24 hours. */
  readonly idempotencyWindow?: Duration.Input | undefined
  /** Events kept for a subscriber that falls behind (older ones are dropped); default 4096. */
  readonly eventCapacity?: number | undefined
}

const identifier = /^[A-Za-z_][A-Za-z0-9_]{0,40}$/

const storeError = (cause: unknown) => new Outbox.StoreError({ cause })

interface LeasedRow {
  readonly message_id: string
  readonly endpoint_id: string
  readonly lease_seq: number
  readonly attempts: number
  readonly manual: number
  readonly event_type: string
  readonly payload: string
}

/**
 * The SQLite store, providing `Outbox.Store` and `Endpoint.Endpoints`. Tables are created if missing.
 *
 * @example
 * ```ts
 * const Webhooks = Dispatcher.layer().pipe(
 *   Layer.provideMerge(OutboxSqlite.layer({ filename: "webhooks.db" })),
 *   Layer.provide(Ssrf.layerHttpClient())
 * )
 * ```
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Outbox.Store | Endpoint.Endpoints, Outbox.StoreError> =>
  Endpoint.layer(options).pipe(Layer.provideMerge(Layer.effect(Outbox.Store)(make(options))))

/**
 * Makes the store in the current scope (the database is closed with it, unless it was given).
 *
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<Outbox.Store["Service"], Outbox.StoreError, Scope.Scope> =>
  Effect.gen(function* () {
    const prefix = options.tablePrefix ?? "webhook_"
    if (!identifier.test(prefix)) {
      return yield* Effect.die(
        new Error(`OutboxSqlite: tablePrefix must match ${identifier}, got ${JSON.stringify(prefix)}`)
      )
    }
    const idempotencyWindow = Duration.toMillis(options.idempotencyWindow ?? "24 hours")
    const db = options.database
      ? options.database
      : yield* Effect.acquireRelease(
          Effect.try({
            try: () => new DatabaseSync(options.filename ?? ":memory:", { timeout: 5_000 }),
            catch: storeError
          }),
          (opened) => Effect.sync(() => (opened.isOpen ? opened.close() : undefined))
        )
    const t = (name: string) => `"${prefix}${name}"`
    const statements = yield* Effect.try({
      try: () => {
        const file = options.database === undefined && (options.filename ?? ":memory:") !== ":memory:"
        if (file) db.exec("PRAGMA journal_mode = WAL")
        if (options.database === undefined) db.exec(`PRAGMA synchronous = ${options.synchronous ?? "FULL"}`)
        db.exec(`
          CREATE TABLE IF NOT EXISTS ${t("endpoints")} (
            id TEXT PRIMARY KEY NOT NULL,
            url TEXT NOT NULL,
            event_types TEXT NOT NULL,
            keys TEXT NOT NULL,
            enabled INTEGER NOT NULL,
            disabled_reason TEXT,
            rate_limit REAL,
            concurrency INTEGER NOT NULL,
            metadata TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            failing_since INTEGER,
            last_success_at INTEGER
          );
          CREATE TABLE IF NOT EXISTS ${t("messages")} (
            id TEXT PRIMARY KEY NOT NULL,
            event_type TEXT NOT NULL,
            payload TEXT NOT NULL,
            idempotency_key TEXT UNIQUE,
            created_at INTEGER NOT NULL
          );
          CREATE INDEX IF NOT EXISTS ${t("messages_created")} ON ${t("messages")} (created_at, id);
          CREATE TABLE IF NOT EXISTS ${t("deliveries")} (
            message_id TEXT NOT NULL,
            endpoint_id TEXT NOT NULL,
            state TEXT NOT NULL,
            next_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            manual INTEGER NOT NULL DEFAULT 0,
            lease_seq INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT,
            last_status INTEGER,
            last_error TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            UNIQUE (message_id, endpoint_id)
          );
          CREATE INDEX IF NOT EXISTS ${t("deliveries_due")} ON ${t("deliveries")} (endpoint_id, next_at)
            WHERE state = 'pending';
          CREATE INDEX IF NOT EXISTS ${t("deliveries_state")} ON ${t("deliveries")} (state, updated_at);
          CREATE INDEX IF NOT EXISTS ${t("deliveries_endpoint")} ON ${t("deliveries")} (endpoint_id, updated_at);
          CREATE TABLE IF NOT EXISTS ${t("attempts")} (
            message_id TEXT NOT NULL,
            endpoint_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            started_at INTEGER NOT NULL,
            duration_ms INTEGER NOT NULL,
            status INTEGER,
            response_body TEXT NOT NULL,
            error TEXT,
            result TEXT NOT NULL,
            PRIMARY KEY (message_id, endpoint_id, attempt)
          ) WITHOUT ROWID;
          CREATE TABLE IF NOT EXISTS ${t("revision")} (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
          INSERT OR IGNORE INTO ${t("revision")} (id, value) VALUES (1, 0);
        `)
        const deliveryColumns = `d.message_id, d.endpoint_id, m.event_type, d.state, d.attempts, d.next_at,
          d.last_status, d.last_error, d.created_at, d.updated_at`
        return {
          revision: db.prepare(`SELECT value FROM ${t("revision")} WHERE id = 1`),
          bumpRevision: db.prepare(`UPDATE ${t("revision")} SET value = value + 1 WHERE id = 1`),
          subscribers: db.prepare(`SELECT id, event_types FROM ${t("endpoints")} WHERE enabled = 1`),
          byKey: db.prepare(`SELECT id, created_at FROM ${t("messages")} WHERE idempotency_key = ?`),
          forgetKey: db.prepare(`UPDATE ${t("messages")} SET idempotency_key = NULL WHERE id = ?`),
          insertMessage: db.prepare(
            `INSERT INTO ${t("messages")} (id, event_type, payload, idempotency_key, created_at)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`
          ),
          insertDelivery: db.prepare(
            `INSERT INTO ${t("deliveries")} (message_id, endpoint_id, state, next_at, created_at, updated_at)
             VALUES (?, ?, 'pending', ?, ?, ?)`
          ),
          message: db.prepare(
            `SELECT id, event_type, payload, idempotency_key, created_at FROM ${t("messages")} WHERE id = ?`
          ),
          attempts: db.prepare(
            `SELECT * FROM ${t("attempts")} WHERE message_id = ? AND endpoint_id = ? ORDER BY attempt`
          ),
          deliveryColumns,
          retry: db.prepare(
            `UPDATE ${t("deliveries")} SET state = 'pending', manual = 1, next_at = ?, lease_owner = NULL, updated_at = ?
             WHERE message_id = ? AND endpoint_id = ? AND state <> 'pending'
               AND endpoint_id IN (SELECT id FROM ${t("endpoints")} WHERE enabled = 1)`
          ),
          recoverOne: db.prepare(
            `UPDATE ${t("deliveries")} SET state = 'pending', manual = 1, next_at = ?1, lease_owner = NULL, updated_at = ?1
             WHERE endpoint_id = ?2 AND state IN ('failed', 'disabled') AND updated_at >= ?3
               AND endpoint_id IN (SELECT id FROM ${t("endpoints")} WHERE enabled = 1)`
          ),
          recoverAll: db.prepare(
            `UPDATE ${t("deliveries")} SET state = 'pending', manual = 1, next_at = ?1, lease_owner = NULL, updated_at = ?1
             WHERE state IN ('failed', 'disabled') AND updated_at >= ?2
               AND endpoint_id IN (SELECT id FROM ${t("endpoints")} WHERE enabled = 1)`
          ),
          endpoint: db.prepare(`SELECT * FROM ${t("endpoints")} WHERE id = ?`),
          endpoints: db.prepare(`SELECT * FROM ${t("endpoints")} ORDER BY created_at, id`),
          insertEndpoint: db.prepare(
            `INSERT INTO ${t("endpoints")} (id, url, event_types, keys, enabled, disabled_reason, rate_limit,
               concurrency, metadata, created_at, updated_at, failing_since, last_success_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`
          ),
          updateEndpoint: db.prepare(
            `UPDATE ${t("endpoints")} SET url = ?, event_types = ?, keys = ?, enabled = ?, disabled_reason = ?,
               rate_limit = ?, concurrency = ?, metadata = ?, created_at = ?, updated_at = ?, failing_since = ?,
               last_success_at = ?
             WHERE id = ?`
          ),
          removeAttempts: db.prepare(`DELETE FROM ${t("attempts")} WHERE endpoint_id = ?`),
          removeDeliveries: db.prepare(`DELETE FROM ${t("deliveries")} WHERE endpoint_id = ?`),
          removeEndpoint: db.prepare(`DELETE FROM ${t("endpoints")} WHERE id = ?`),
          endpointEnabled: db.prepare(`SELECT enabled FROM ${t("endpoints")} WHERE id = ?`),
          lease: db.prepare(
            `UPDATE ${t("deliveries")} SET next_at = ?1, lease_owner = ?2, lease_seq = lease_seq + 1
             WHERE rowid IN (
               SELECT rowid FROM ${t("deliveries")}
               WHERE endpoint_id = ?3 AND state = 'pending' AND next_at <= ?4
               ORDER BY next_at LIMIT ?5)
             RETURNING message_id, endpoint_id, lease_seq, attempts, manual,
               (SELECT event_type FROM ${t("messages")} m WHERE m.id = message_id) AS event_type,
               (SELECT payload FROM ${t("messages")} m WHERE m.id = message_id) AS payload`
          ),
          leaseOf: db.prepare(
            `SELECT lease_seq, state FROM ${t("deliveries")} WHERE message_id = ? AND endpoint_id = ?`
          ),
          health: db.prepare(
            `SELECT enabled, failing_since, last_success_at FROM ${t("endpoints")} WHERE id = ?`
          ),
          complete: db.prepare(
            `UPDATE ${t("deliveries")} SET state = ?1, next_at = ?2, attempts = ?3, manual = 0, lease_owner = NULL,
               last_status = ?4, last_error = ?5, updated_at = ?6
             WHERE message_id = ?7 AND endpoint_id = ?8 AND lease_seq = ?9 AND state = 'pending'`
          ),
          insertAttempt: db.prepare(
            `INSERT INTO ${t("attempts")} (message_id, endpoint_id, attempt, started_at, duration_ms, status,
               response_body, error, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
          ),
          writeHealth: db.prepare(
            `UPDATE ${t("endpoints")} SET failing_since = ?, last_success_at = ? WHERE id = ?`
          ),
          disableEndpoint: db.prepare(
            `UPDATE ${t("endpoints")} SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ? AND enabled = 1`
          ),
          disableDeliveries: db.prepare(
            `UPDATE ${t("deliveries")} SET state = 'disabled', lease_owner = NULL, updated_at = ?1
             WHERE endpoint_id = ?2 AND state = 'pending' AND (lease_owner IS NULL OR next_at <= ?1)`
          ),
          startOf: db.prepare(
            `SELECT d.lease_seq, d.state, e.enabled FROM ${t("deliveries")} d
             JOIN ${t("endpoints")} e ON e.id = d.endpoint_id
             WHERE d.message_id = ? AND d.endpoint_id = ?`
          ),
          endDisabled: db.prepare(
            `UPDATE ${t("deliveries")} SET state = 'disabled', lease_owner = NULL, updated_at = ?1
             WHERE message_id = ?2 AND endpoint_id = ?3 AND lease_seq = ?4 AND state = 'pending'
               AND endpoint_id IN (SELECT id FROM ${t("endpoints")} WHERE enabled = 0)`
          ),
          release: db.prepare(
            `UPDATE ${t("deliveries")} SET next_at = ?, lease_owner = NULL
             WHERE message_id = ? AND endpoint_id = ? AND lease_seq = ? AND state = 'pending'`
          ),
          nextDue: db.prepare(
            `SELECT MIN((SELECT next_at FROM ${t("deliveries")} d
                         WHERE d.endpoint_id = e.id AND d.state = 'pending' ORDER BY d.next_at LIMIT 1)) AS due
             FROM ${t("endpoints")} e WHERE e.enabled = 1`
          ),
          // The messages after a cursor, oldest first, each with whether every delivery it has ended
          // in one of the states (?4, a JSON array) before the cutoff (?5).
          pruneScan: db.prepare(
            `SELECT m.id, m.created_at, NOT EXISTS (
                 SELECT 1 FROM ${t("deliveries")} d WHERE d.message_id = m.id
                   AND (d.state NOT IN (SELECT value FROM json_each(?4)) OR d.updated_at >= ?5)
               ) AS prunable
             FROM ${t("messages")} m
             WHERE (m.created_at, m.id) > (?1, ?2) AND m.created_at < ?3
             ORDER BY m.created_at, m.id LIMIT ?6`
          ),
          pruneAttempts: db.prepare(
            `DELETE FROM ${t("attempts")} WHERE message_id IN (SELECT value FROM json_each(?))`
          ),
          pruneDeliveries: db.prepare(
            `DELETE FROM ${t("deliveries")} WHERE message_id IN (SELECT value FROM json_each(?))`
          ),
          pruneMessages: db.prepare(
            `DELETE FROM ${t("messages")} WHERE id IN (SELECT value FROM json_each(?))`
          ),
          sweep: db.prepare(
            `UPDATE ${t("deliveries")} SET state = 'disabled', lease_owner = NULL, updated_at = ?1
             WHERE state = 'pending' AND next_at <= ?1
               AND endpoint_id IN (SELECT id FROM ${t("endpoints")} WHERE enabled = 0)`
          )
        } as const
      },
      catch: storeError
    })

    // With `synchronous = FULL`, only writes that must survive power loss pay for an fsync: messages,
    // endpoints, repairs. Lease and attempt bookkeeping commit without one (WAL, NORMAL): losing the
    // last of those to a power cut only means an attempt is made again, which at-least-once allows;
    // the next durable commit syncs them anyway.
    const tunable = options.database === undefined && (options.synchronous ?? "FULL") === "FULL"
    let synchronous: "FULL" | "NORMAL" = "FULL"
    const setSynchronous = (durable: boolean) => {
      const wanted = durable ? "FULL" : "NORMAL"
      if (tunable && wanted !== synchronous) {
        db.exec(`PRAGMA synchronous = ${wanted}`)
        synchronous = wanted
      }
    }
    // Runs `f` atomically: its own IMMEDIATE transaction, or a savepoint inside the application's.
    const transaction = <A>(durable: boolean, f: () => A): A => {
      if (db.isTransaction) {
        db.exec(`SAVEPOINT strata_outbox`)
        try {
          const result = f()
          db.exec(`RELEASE strata_outbox`)
          return result
        } catch (error) {
          db.exec(`ROLLBACK TO strata_outbox`)
          db.exec(`RELEASE strata_outbox`)
          throw error
        }
      }
      setSynchronous(durable)
      db.exec("BEGIN IMMEDIATE")
      try {
        const result = f()
        db.exec("COMMIT")
        return result
      } catch (error) {
        if (db.isTransaction) db.exec("ROLLBACK")
        throw error
      }
    }
    const attempt = <A>(f: () => A): Effect.Effect<A, Outbox.StoreError> =>
      Effect.try({ try: f, catch: storeError })
    const atomically = <A>(f: (now: number) => A, durable = true): Effect.Effect<A, Outbox.StoreError> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => attempt(() => transaction(durable, () => f(now))))

    const events = yield* PubSub.sliding<Outbox.Event>(options.eventCapacity ?? 4096)
    const changes = Store.makeSignal()

    // Subscribed endpoints, parsed once per endpoint revision.
    let subscriberCache:
      { revision: number; list: ReadonlyArray<{ id: string; eventTypes: ReadonlyArray<string> }> } | undefined
    const revisionNow = () => Number((statements.revision.get() as { value: number }).value)
    const subscribers = () => {
      const revision = revisionNow()
      if (subscriberCache === undefined || subscriberCache.revision !== revision) {
        const rows = statements.subscribers.all() as Array<{ id: string; event_types: string }>
        subscriberCache = {
          revision,
          list: rows.map((row) => ({
            id: row.id,
            eventTypes: JSON.parse(row.event_types) as ReadonlyArray<string>
          }))
        }
      }
      return subscriberCache.list
    }

    const insertOne = (
      message: Outbox.Outgoing,
      now: number,
      list: ReadonlyArray<Store.Subscriber>
    ): Outbox.Sent => {
      const key = message.idempotencyKey ?? null
      if (key !== null) {
        const existing = statements.byKey.get(key) as { id: string; created_at: number } | undefined
        if (existing !== undefined) {
          if (Number(existing.created_at) > now - idempotencyWindow)
            return { id: existing.id, deliveries: 0, duplicate: true }
          statements.forgetKey.run(existing.id)
        }
      }
      const id = message.id ?? Endpoint.makeId("msg")
      const inserted = statements.insertMessage.run(id, message.eventType, message.payload, key, now)
      if (Number(inserted.changes) === 0) return { id, deliveries: 0, duplicate: true }
      const subscribed = Store.subscribedTo(list, message.eventType)
      for (const endpointId of subscribed) statements.insertDelivery.run(id, endpointId, now, now, now)
      return { id, deliveries: subscribed.length, duplicate: false }
    }
    const insertAll = (messages: ReadonlyArray<Outbox.Outgoing>, now: number) => {
      const list = subscribers()
      return messages.map((message) => insertOne(message, now, list))
    }

    const write = (messages: ReadonlyArray<Outbox.Outgoing>) =>
      Effect.tap(
        atomically((now) => insertAll(messages, now)),
        () => Effect.sync(changes.signal)
      )
    const submit = yield* Store.groupCommit(write)

    const sendAll = (
      messages: ReadonlyArray<Outbox.Outgoing>
    ): Effect.Effect<ReadonlyArray<Outbox.Sent>, Outbox.StoreError> =>
      Effect.suspend(() => {
        // Inside the application's transaction: write now, as part of it (a savepoint).
        if (db.isTransaction) return write(messages)
        return submit(messages)
      })

    const readEndpoint = (id: string) => {
      const row = statements.endpoint.get(id) as Store.EndpointRow | undefined
      return row === undefined ? undefined : Store.decodeEndpoint(row)
    }

    const disable = (endpointId: string, reason: Endpoint.DisabledReason, now: number): boolean => {
      const changed = Number(statements.disableEndpoint.run(reason, now, endpointId).changes) > 0
      if (changed) {
        statements.bumpRevision.run()
        statements.disableDeliveries.run(now, endpointId)
      }
      return changed
    }

    const deliveries = (query: Outbox.DeliveryQuery) =>
      attempt(() => {
        const where: Array<string> = []
        const params: Array<SQLInputValue> = []
        if (query.messageId !== undefined) {
          where.push("d.message_id = ?")
          params.push(query.messageId)
        }
        if (query.endpointId !== undefined) {
          where.push("d.endpoint_id = ?")
          params.push(query.endpointId)
        }
        if (query.state !== undefined) {
          where.push("d.state = ?")
          params.push(query.state)
        }
        if (query.since !== undefined) {
          where.push("d.updated_at >= ?")
          params.push(query.since)
        }
        if (query.before !== undefined) {
          where.push("d.updated_at < ?")
          params.push(query.before)
        }
        params.push(Store.queryLimit(query.limit))
        const rows = db
          .prepare(
            `SELECT ${statements.deliveryColumns} FROM ${t("deliveries")} d JOIN ${t("messages")} m ON m.id = d.message_id
             ${where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`}
             ORDER BY d.updated_at DESC, d.message_id DESC LIMIT ?`
          )
          .all(...params) as Array<unknown>
        return rows.map((row) => Store.decodeDelivery(row as Store.DeliveryRow))
      })

    const complete = (completions: ReadonlyArray<Outbox.Completion>, disableAfter: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        attempt(() =>
          transaction(false, () => {
            const endpoints = new Map<string, Store.EndpointState>()
            for (const { lease } of completions) {
              if (endpoints.has(lease.endpointId)) continue
              const row = statements.health.get(lease.endpointId) as
                { enabled: number; failing_since: number | null; last_success_at: number | null } | undefined
              if (row === undefined) continue
              endpoints.set(lease.endpointId, {
                enabled: Number(row.enabled) === 1,
                health: { failingSince: row.failing_since, lastSuccessAt: row.last_success_at }
              })
            }
            // Optimistically every completion still holds its lease (a lost lease is rare): apply the
            // plan under a savepoint, and only if some update finds its lease gone, undo it, read which
            // ones hold, and plan again.
            const apply = (plan: Store.Plan): boolean => {
              for (const { completion: c, nextAt, result, state } of plan.applied) {
                const { lease } = c
                const changed = statements.complete.run(
                  state,
                  nextAt,
                  lease.attempt,
                  c.status,
                  c.error,
                  c.endedAt,
                  lease.messageId,
                  lease.endpointId,
                  lease.leaseSeq
                )
                if (Number(changed.changes) === 0) return false
                statements.insertAttempt.run(
                  lease.messageId,
                  lease.endpointId,
                  lease.attempt,
                  c.startedAt,
                  Math.max(0, c.endedAt - c.startedAt),
                  c.status,
                  c.responseBody,
                  c.error,
                  result
                )
              }
              return true
            }
            db.exec("SAVEPOINT strata_complete")
            let plan = Store.planCompletions(
              completions,
              completions.map(() => true),
              endpoints,
              disableAfter
            )
            if (!apply(plan)) {
              db.exec("ROLLBACK TO strata_complete")
              const current = completions.map(({ lease }) => {
                const row = statements.leaseOf.get(lease.messageId, lease.endpointId) as
                  { lease_seq: number; state: string } | undefined
                return (
                  row !== undefined && row.state === "pending" && Number(row.lease_seq) === lease.leaseSeq
                )
              })
              plan = Store.planCompletions(completions, current, endpoints, disableAfter)
              if (!apply(plan)) throw new Error("OutboxSqlite: a lease changed inside a transaction")
            }
            db.exec("RELEASE strata_complete")
            for (const [id, health] of plan.health) {
              statements.writeHealth.run(health.failingSince, health.lastSuccessAt, id)
            }
            for (const { endpointId, reason } of plan.disable) disable(endpointId, reason, now)
            const applied = completions.map(() => false)
            for (const { index } of plan.applied) applied[index] = true
            return { applied, events: plan.events }
          })
        )
      ).pipe(
        Effect.tap(({ events: published }) =>
          published.length === 0 ? Effect.void : PubSub.publishAll(events, published)
        ),
        Effect.map(({ applied }) => applied)
      )

    return Outbox.Store.of({
      send: (message) => Effect.map(sendAll([message]), (sent) => sent[0]!),
      sendAll,
      message: (id) =>
        attempt(() => {
          const row = statements.message.get(id) as Store.MessageRow | undefined
          return row === undefined ? Option.none() : Option.some(Store.decodeMessage(row))
        }),
      deliveries,
      attempts: (key) =>
        attempt(() =>
          (statements.attempts.all(key.messageId, key.endpointId) as Array<unknown>).map((row) =>
            Store.decodeAttempt(row as Store.AttemptRow)
          )
        ),
      retry: (key) =>
        Effect.tap(
          atomically(
            (now) => Number(statements.retry.run(now, now, key.messageId, key.endpointId).changes) > 0
          ),
          () => Effect.sync(changes.signal)
        ),
      recover: (query) =>
        Effect.tap(
          atomically((now) =>
            Number(
              (query.endpointId === undefined
                ? statements.recoverAll.run(now, query.since)
                : statements.recoverOne.run(now, query.endpointId, query.since)
              ).changes
            )
          ),
          () => Effect.sync(changes.signal)
        ),
      events,
      endpoints: {
        insert: (endpoint) =>
          Effect.tap(
            atomically(() => {
              const inserted = statements.insertEndpoint.run(endpoint.id, ...Store.endpointColumns(endpoint))
              if (Number(inserted.changes) === 0) return false
              statements.bumpRevision.run()
              return true
            }),
            () => Effect.sync(changes.signal)
          ),
        get: (id) => attempt(() => Option.fromNullishOr(readEndpoint(id))),
        list: attempt(() =>
          (statements.endpoints.all() as Array<unknown>).map((row) =>
            Store.decodeEndpoint(row as Store.EndpointRow)
          )
        ),
        update: (id, f) =>
          Effect.tap(
            atomically((now) => {
              const current = readEndpoint(id)
              if (current === undefined) return Option.none()
              const next = f(current, now)
              statements.updateEndpoint.run(...Store.endpointColumns(next), id)
              statements.bumpRevision.run()
              if (current.enabled && !next.enabled) statements.disableDeliveries.run(now, id)
              return Option.some(next)
            }),
            () => Effect.sync(changes.signal)
          ),
        remove: (id) =>
          Effect.tap(
            atomically(() => {
              statements.removeAttempts.run(id)
              statements.removeDeliveries.run(id)
              const removed = Number(statements.removeEndpoint.run(id).changes) > 0
              if (removed) statements.bumpRevision.run()
              return removed
            }),
            () => Effect.sync(changes.signal)
          ),
        revision: attempt(revisionNow)
      },
      lease: (request) =>
        atomically((now) => {
          const leased: Array<Outbox.Lease> = []
          const until = now + request.leaseMillis
          for (const [endpointId, free] of request.capacity) {
            const room = Math.min(free, request.limit - leased.length)
            if (room <= 0) continue
            const enabled = statements.endpointEnabled.get(endpointId) as { enabled: number } | undefined
            if (enabled === undefined || Number(enabled.enabled) !== 1) continue
            const rows = statements.lease.all(until, request.owner, endpointId, now, room) as Array<unknown>
            for (const raw of rows) {
              const row = raw as LeasedRow
              const attempts = Number(row.attempts)
              leased.push({
                messageId: row.message_id,
                endpointId: row.endpoint_id,
                eventType: row.event_type,
                payload: row.payload,
                leaseSeq: Number(row.lease_seq),
                leaseUntil: until,
                attempt: attempts + 1,
                manual: Number(row.manual) === 1
              })
            }
          }
          return leased
        }, false),
      complete: (completions, { disableAfter }) =>
        completions.length === 0 ? Effect.succeed([]) : complete(completions, disableAfter),
      start: (leases) =>
        leases.length === 0
          ? Effect.succeed([])
          : Effect.flatMap(Clock.currentTimeMillis, (now) =>
              attempt(() => {
                // Reads alone in the common case (every endpoint enabled); a write only to end the
                // deliveries of a disabled endpoint, fenced by the lease so it cannot end a retaken one.
                const verdicts = leases.map((lease): Outbox.StartVerdict => {
                  const row = statements.startOf.get(lease.messageId, lease.endpointId) as
                    { lease_seq: number; state: string; enabled: number } | undefined
                  if (
                    row === undefined ||
                    row.state !== "pending" ||
                    Number(row.lease_seq) !== lease.leaseSeq
                  )
                    return "lost"
                  return Number(row.enabled) === 1 ? "attempt" : "disabled"
                })
                if (!verdicts.includes("disabled")) return verdicts
                return transaction(false, () =>
                  verdicts.map((verdict, i) => {
                    if (verdict !== "disabled") return verdict
                    const lease = leases[i]!
                    const ended = statements.endDisabled.run(
                      now,
                      lease.messageId,
                      lease.endpointId,
                      lease.leaseSeq
                    )
                    return Number(ended.changes) > 0 ? "disabled" : "lost"
                  })
                )
              })
            ),
      release: (leases) =>
        leases.length === 0
          ? Effect.void
          : Effect.tap(
              atomically((now) => {
                for (const lease of leases)
                  statements.release.run(now, lease.messageId, lease.endpointId, lease.leaseSeq)
              }, false),
              () => Effect.sync(changes.signal)
            ),
      nextDue: attempt(() => {
        const row = statements.nextDue.get() as { due: number | null } | undefined
        return row?.due == null ? Option.none() : Option.some(Number(row.due))
      }),
      sweep: atomically((now) => Number(statements.sweep.run(now).changes), false),
      // One transaction per batch, each short; it need not be durable: a prune lost to a power cut is
      // only done again.
      prune: (query) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Store.prune(query, now, idempotencyWindow, (step) =>
            attempt(() =>
              transaction(false, () => {
                const rows = statements.pruneScan.all(
                  step.after.createdAt,
                  step.after.id,
                  step.upTo,
                  JSON.stringify(step.states),
                  step.before,
                  step.size
                ) as Array<{ id: string; created_at: number; prunable: number }>
                const last = rows.at(-1)
                const ids = JSON.stringify(
                  rows.flatMap((row) => (Number(row.prunable) === 1 ? [row.id] : [])).slice(0, step.take)
                )
                return {
                  scanned: rows.length,
                  last: last === undefined ? undefined : { createdAt: Number(last.created_at), id: last.id },
                  pruned: {
                    attempts: Number(statements.pruneAttempts.run(ids).changes),
                    deliveries: Number(statements.pruneDeliveries.run(ids).changes),
                    messages: Number(statements.pruneMessages.run(ids).changes)
                  }
                }
              })
            )
          )
        ),
      changed: changes.wait
    })
  })
