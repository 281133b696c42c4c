/**
 * The outbox store in PostgreSQL through `effect/sql` (with `@effect/sql-pg`), for several
 * dispatcher processes on one database: each delivery is leased to one worker at a time with
 * `FOR UPDATE SKIP LOCKED` and a lease expiry, so workers never wait on each other's rows and a dead
 * worker's deliveries are taken again once its leases run out. It also keeps the endpoints.
 *
 * A `send` inside the application's `sql.withTransaction` joins that transaction (a savepoint): the
 * message exists if and only if the application's own writes commit — a transactional outbox.
 *
 * Times are the Effect `Clock` of each process (so `TestClock` drives them); keep the dispatcher
 * hosts' clocks in sync (NTP) as lease expiry compares them. `events` and the wake-up on `send` are
 * per process; other processes see new work within their `pollInterval`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Endpoint from "./Endpoint.ts"
import * as Store from "./internal/store.ts"
import * as Outbox from "./Outbox.ts"

/**
 * Options of the Postgres store. `allowEndpoints` (from `Endpoint.Options`) is passed to the
 * `Endpoints` service: the blocked addresses endpoint URLs may point at.
 *
 * @category models
 */
export interface Options extends Endpoint.Options {
  /** Prefix of the store's tables; default `webhook_`. Must match `[A-Za-z_][A-Za-z0-9_]*`. */
  readonly tablePrefix?: string | undefined
  /** How long an idempotency key dedupes; default 24 hours. */
  readonly idempotencyWindow?: Duration.Input | undefined
  /** Events kept for a subscriber that falls behind (older ones are dropped); default 4096. */
  readonly eventCapacity?: number | undefined
}

const identifier = /^[A-Za-z_][A-Za-z0-9_]{0,40}$/

const storeError = (cause: unknown) => new Outbox.StoreError({ cause })

type Row = Record<string, unknown>

/**
 * The tables of a prefix, for tests and tooling that clean up.
 *
 * @category constants
 */
export const tables = (prefix = "webhook_"): ReadonlyArray<string> =>
  ["attempts", "deliveries", "messages", "endpoints", "revision"].map((name) => `${prefix}${name}`)

/**
 * The Postgres store, providing `Outbox.Store` and `Endpoint.Endpoints`; needs an `SqlClient` (e.g.
 * `PgClient.layer`). Tables are created if missing (under an advisory lock, so processes starting
 * together do not race).
 *
 * @example
 * ```ts
 * const Store = OutboxPostgres.layer().pipe(Layer.provide(PgClient.layer({ url: Redacted.make(url) })))
 * ```
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<Outbox.Store | Endpoint.Endpoints, Outbox.StoreError, SqlClient.SqlClient> =>
  Endpoint.layer(options).pipe(Layer.provideMerge(Layer.effect(Outbox.Store)(make(options))))

/**
 * The store with its own connection pool (`@effect/sql-pg`).
 *
 * @example
 * ```ts
 * const Store = OutboxPostgres.layerPool({ url: Redacted.make(process.env.DATABASE_URL!) })
 * ```
 * @category layers
 */
export const layerPool = (
  config: PgClient.PgPoolConfig,
  options: Options = {}
): Layer.Layer<Outbox.Store | Endpoint.Endpoints, Outbox.StoreError | SqlError> =>
  layer(options).pipe(Layer.provide(PgClient.layer(config)))

/**
 * Makes the store in the current scope.
 *
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Outbox.Store["Service"], Outbox.StoreError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function* () {
    const prefix = options.tablePrefix ?? "webhook_"
    if (!identifier.test(prefix)) {
      return yield* Effect.die(
        new Error(`OutboxPostgres: tablePrefix must match ${identifier}, got ${JSON.stringify(prefix)}`)
      )
    }
    const sql = yield* SqlClient.SqlClient
    const idempotencyWindow = Duration.toMillis(options.idempotencyWindow ?? "24 hours")
    const t = (name: string) => `"${prefix}${name}"`
    const query = (text: string, params: ReadonlyArray<unknown> = []) =>
      Effect.mapError(sql.unsafe<Row>(text, params), storeError)
    const transaction = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.mapError(sql.withTransaction(effect), (error) =>
        error instanceof Outbox.StoreError ? error : storeError(error)
      )

    yield* transaction(
      Effect.gen(function* () {
        // One migrator at a time: CREATE TABLE IF NOT EXISTS races with itself across sessions.
        yield* query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`strata-webhooks:${prefix}`])
        yield* query(`
          CREATE TABLE IF NOT EXISTS ${t("endpoints")} (
            id text PRIMARY KEY,
            url text NOT NULL,
            event_types text NOT NULL,
            keys text NOT NULL,
            enabled integer NOT NULL,
            disabled_reason text,
            rate_limit double precision,
            concurrency integer NOT NULL,
            metadata text NOT NULL,
            created_at bigint NOT NULL,
            updated_at bigint NOT NULL,
            failing_since bigint,
            last_success_at bigint
          )`)
        yield* query(`
          CREATE TABLE IF NOT EXISTS ${t("messages")} (
            id text PRIMARY KEY,
            event_type text NOT NULL,
            payload text NOT NULL,
            idempotency_key text UNIQUE,
            created_at bigint NOT NULL
          )`)
        yield* query(
          `CREATE INDEX IF NOT EXISTS ${t("messages_created")} ON ${t("messages")} (created_at, id)`
        )
        yield* query(`
          CREATE TABLE IF NOT EXISTS ${t("deliveries")} (
            message_id text NOT NULL,
            endpoint_id text NOT NULL,
            state text NOT NULL,
            next_at bigint NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            manual integer NOT NULL DEFAULT 0,
            lease_seq integer NOT NULL DEFAULT 0,
            lease_owner text,
            last_status integer,
            last_error text,
            created_at bigint NOT NULL,
            updated_at bigint NOT NULL,
            PRIMARY KEY (message_id, endpoint_id)
          )`)
        yield* query(
          `CREATE INDEX IF NOT EXISTS ${t("deliveries_due")} ON ${t("deliveries")} (endpoint_id, next_at) WHERE state = 'pending'`
        )
        yield* query(
          `CREATE INDEX IF NOT EXISTS ${t("deliveries_state")} ON ${t("deliveries")} (state, updated_at)`
        )
        yield* query(
          `CREATE INDEX IF NOT EXISTS ${t("deliveries_endpoint")} ON ${t("deliveries")} (endpoint_id, updated_at)`
        )
        yield* query(`
          CREATE TABLE IF NOT EXISTS ${t("attempts")} (
            message_id text NOT NULL,
            endpoint_id text NOT NULL,
            attempt integer NOT NULL,
            started_at bigint NOT NULL,
            duration_ms bigint NOT NULL,
            status integer,
            response_body text NOT NULL,
            error text,
            result text NOT NULL,
            PRIMARY KEY (message_id, endpoint_id, attempt)
          )`)
        yield* query(
          `CREATE TABLE IF NOT EXISTS ${t("revision")} (id integer PRIMARY KEY CHECK (id = 1), value bigint NOT NULL)`
        )
        yield* query(`INSERT INTO ${t("revision")} (id, value) VALUES (1, 0) ON CONFLICT DO NOTHING`)
      })
    )

    const events = yield* PubSub.sliding<Outbox.Event>(options.eventCapacity ?? 4096)
    const changes = Store.makeSignal()
    // Runs after the enclosing transaction commits (now, outside one): the local dispatcher wakes.
    const signalAfterCommit = sql.afterCommit(Effect.sync(changes.signal))

    const revision = Effect.map(query(`SELECT value FROM ${t("revision")} WHERE id = 1`), (rows) =>
      Number(rows[0]?.["value"] ?? 0)
    )
    const bumpRevision = query(`UPDATE ${t("revision")} SET value = value + 1 WHERE id = 1`)

    let subscriberCache: { revision: number; list: ReadonlyArray<Store.Subscriber> } | undefined
    const subscribers = Effect.gen(function* () {
      const current = yield* revision
      if (subscriberCache === undefined || subscriberCache.revision !== current) {
        const rows = yield* query(`SELECT id, event_types FROM ${t("endpoints")} WHERE enabled = 1`)
        subscriberCache = {
          revision: current,
          list: rows.map((row) => ({
            id: row["id"] as string,
            eventTypes: JSON.parse(row["event_types"] as string) as ReadonlyArray<string>
          }))
        }
      }
      return subscriberCache.list
    })

    // A batch of messages in a handful of statements, whatever its size: idempotency keys looked up
    // at once, messages inserted at once (a conflict on the id or the key skips the row), deliveries
    // inserted at once.
    const insertBatch = (messages: ReadonlyArray<Outbox.Outgoing>) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const list = yield* subscribers
        const keys = [
          ...new Set(messages.flatMap((m) => (m.idempotencyKey == null ? [] : [m.idempotencyKey])))
        ]
        const byKey = (keyList: ReadonlyArray<string>) =>
          Effect.map(
            query(
              `SELECT id, idempotency_key, created_at FROM ${t("messages")}
               WHERE idempotency_key IN (SELECT jsonb_array_elements_text($1::jsonb))`,
              [JSON.stringify(keyList)]
            ),
            (rows) => new Map(rows.map((row) => [row["idempotency_key"] as string, row]))
          )
        const fresh = new Map<string, string>()
        if (keys.length > 0) {
          const expired: Array<string> = []
          for (const [key, row] of yield* byKey(keys)) {
            if (Number(row["created_at"]) > now - idempotencyWindow) fresh.set(key, row["id"] as string)
            else expired.push(row["id"] as string)
          }
          if (expired.length > 0) {
            yield* query(
              `UPDATE ${t("messages")} SET idempotency_key = NULL
               WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))`,
              [JSON.stringify(expired)]
            )
          }
        }
        const planned = messages.map((message) => {
          const key = message.idempotencyKey ?? null
          const duplicateOf = key === null ? undefined : fresh.get(key)
          return { message, key, duplicateOf, id: duplicateOf ?? message.id ?? Endpoint.makeId("msg") }
        })
        const rows = planned.filter((p) => p.duplicateOf === undefined)
        const inserted =
          rows.length === 0
            ? new Set<string>()
            : new Set(
                (yield* query(
                  `INSERT INTO ${t("messages")} (id, event_type, payload, idempotency_key, created_at)
                   SELECT id, event_type, payload, idempotency_key, $2
                   FROM jsonb_to_recordset($1::jsonb) AS x(id text, event_type text, payload text, idempotency_key text)
                   ON CONFLICT DO NOTHING RETURNING id`,
                  [
                    JSON.stringify(
                      rows.map((p) => ({
                        id: p.id,
                        event_type: p.message.eventType,
                        payload: p.message.payload,
                        idempotency_key: p.key
                      }))
                    ),
                    now
                  ]
                )).map((row) => row["id"] as string)
              )
        // Lost a race (to a concurrent send, or to an earlier message of this batch) on a key: the
        // winner's id is the answer.
        const lost = planned.filter(
          (p) => p.duplicateOf === undefined && !inserted.has(p.id) && p.key !== null
        )
        const winners = lost.length === 0 ? new Map<string, Row>() : yield* byKey(lost.map((p) => p.key!))
        const deliveries: Array<{ message_id: string; endpoint_id: string }> = []
        const sent = planned.map((p): Outbox.Sent => {
          if (p.duplicateOf !== undefined) return { id: p.duplicateOf, deliveries: 0, duplicate: true }
          if (!inserted.has(p.id)) {
            const winner = p.key === null ? undefined : winners.get(p.key)
            return { id: (winner?.["id"] as string | undefined) ?? p.id, deliveries: 0, duplicate: true }
          }
          const subscribed = Store.subscribedTo(list, p.message.eventType)
          for (const endpointId of subscribed) deliveries.push({ message_id: p.id, endpoint_id: endpointId })
          return { id: p.id, deliveries: subscribed.length, duplicate: false }
        })
        if (deliveries.length > 0) {
          yield* query(
            `INSERT INTO ${t("deliveries")} (message_id, endpoint_id, state, next_at, created_at, updated_at)
             SELECT message_id, endpoint_id, 'pending', $2, $2, $2
             FROM jsonb_to_recordset($1::jsonb) AS x(message_id text, endpoint_id text)`,
            [JSON.stringify(deliveries), now]
          )
        }
        yield* signalAfterCommit
        return sent
      })

    const write = (messages: ReadonlyArray<Outbox.Outgoing>) => transaction(insertBatch(messages))
    const submit = yield* Store.groupCommit(write)
    // Inside the application's transaction (a savepoint of it), or group-committed with others.
    const sendAll = (messages: ReadonlyArray<Outbox.Outgoing>) =>
      Effect.flatMap(Effect.serviceOption(sql.transactionService), (open) =>
        Option.isSome(open) ? write(messages) : submit(messages)
      )

    const readEndpoint = (id: string, lock: boolean) =>
      Effect.map(
        query(`SELECT * FROM ${t("endpoints")} WHERE id = $1${lock ? " FOR UPDATE" : ""}`, [id]),
        (rows) =>
          rows[0] === undefined ? undefined : Store.decodeEndpoint(rows[0] as unknown as Store.EndpointRow)
      )

    const disableDeliveries = (endpointId: string, now: number) =>
      query(
        `UPDATE ${t("deliveries")} SET state = 'disabled', lease_owner = NULL, updated_at = $1
         WHERE endpoint_id = $2 AND state = 'pending' AND (lease_owner IS NULL OR next_at <= $1)`,
        [now, endpointId]
      )

    const deliveries = (q: Outbox.DeliveryQuery) =>
      Effect.gen(function* () {
        const where: Array<string> = []
        const params: Array<unknown> = []
        const add = (clause: (n: string) => string, value: unknown) => {
          params.push(value)
          where.push(clause(`$${params.length}`))
        }
        if (q.messageId !== undefined) add((n) => `d.message_id = ${n}`, q.messageId)
        if (q.endpointId !== undefined) add((n) => `d.endpoint_id = ${n}`, q.endpointId)
        if (q.state !== undefined) add((n) => `d.state = ${n}`, q.state)
        if (q.since !== undefined) add((n) => `d.updated_at >= ${n}`, q.since)
        if (q.before !== undefined) add((n) => `d.updated_at < ${n}`, q.before)
        params.push(Store.queryLimit(q.limit))
        const rows = yield* query(
          `SELECT d.message_id, d.endpoint_id, m.event_type, d.state, d.attempts, d.next_at, d.last_status,
             d.last_error, d.created_at, d.updated_at
           FROM ${t("deliveries")} d JOIN ${t("messages")} m ON m.id = d.message_id
           ${where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`}
           ORDER BY d.updated_at DESC, d.message_id DESC LIMIT $${params.length}`,
          params
        )
        return rows.map((row) => Store.decodeDelivery(row as unknown as Store.DeliveryRow))
      })

    const complete = (completions: ReadonlyArray<Outbox.Completion>, disableAfter: number) =>
      transaction(
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const endpointIds = [...new Set(completions.map((c) => c.lease.endpointId))].toSorted()
          // Endpoint rows first, in id order, so two workers completing for the same endpoints
          // queue up rather than deadlock; their health is read-modified-written below.
          const endpointRows = yield* query(
            `SELECT id, enabled, failing_since, last_success_at FROM ${t("endpoints")}
             WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY id FOR UPDATE`,
            [JSON.stringify(endpointIds)]
          )
          const endpoints = new Map<string, Store.EndpointState>()
          for (const row of endpointRows) {
            endpoints.set(row["id"] as string, {
              enabled: Number(row["enabled"]) === 1,
              health: {
                failingSince: row["failing_since"] == null ? null : Number(row["failing_since"]),
                lastSuccessAt: row["last_success_at"] == null ? null : Number(row["last_success_at"])
              }
            })
          }
          // Which completions still hold their lease (locked, so it cannot move under us).
          const keys = completions.map((c) => ({
            message_id: c.lease.messageId,
            endpoint_id: c.lease.endpointId,
            lease_seq: c.lease.leaseSeq
          }))
          const currentRows = yield* query(
            `SELECT d.message_id, d.endpoint_id, d.lease_seq FROM ${t("deliveries")} d
             JOIN jsonb_to_recordset($1::jsonb) AS k(message_id text, endpoint_id text, lease_seq integer)
               ON d.message_id = k.message_id AND d.endpoint_id = k.endpoint_id AND d.lease_seq = k.lease_seq
             WHERE d.state = 'pending'
             ORDER BY d.message_id, d.endpoint_id FOR UPDATE OF d`,
            [JSON.stringify(keys)]
          )
          const held = new Set(currentRows.map((row) => `${row["message_id"]}\u0000${row["endpoint_id"]}`))
          const current = completions.map((c) => held.has(`${c.lease.messageId}\u0000${c.lease.endpointId}`))
          const plan = Store.planCompletions(completions, current, endpoints, disableAfter)
          if (plan.applied.length > 0) {
            const rows = plan.applied.map(({ completion: c, nextAt, result, state }) => ({
              message_id: c.lease.messageId,
              endpoint_id: c.lease.endpointId,
              attempt: c.lease.attempt,
              state,
              next_at: nextAt,
              status: c.status,
              error: c.error,
              started_at: c.startedAt,
              ended_at: c.endedAt,
              duration_ms: Math.max(0, c.endedAt - c.startedAt),
              response_body: c.responseBody,
              result
            }))
            yield* query(
              `WITH x AS (
                 SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(message_id text, endpoint_id text, attempt integer,
                   state text, next_at bigint, status integer, error text, started_at bigint, ended_at bigint,
                   duration_ms bigint, response_body text, result text)
               ), updated AS (
                 UPDATE ${t("deliveries")} d SET state = x.state, next_at = x.next_at, attempts = x.attempt,
                   manual = 0, lease_owner = NULL, last_status = x.status, last_error = x.error, updated_at = x.ended_at
                 FROM x WHERE d.message_id = x.message_id AND d.endpoint_id = x.endpoint_id
               )
               INSERT INTO ${t("attempts")} (message_id, endpoint_id, attempt, started_at, duration_ms, status,
                 response_body, error, result)
               SELECT message_id, endpoint_id, attempt, started_at, duration_ms, status, response_body, error, result
               FROM x ON CONFLICT DO NOTHING`,
              [JSON.stringify(rows)]
            )
          }
          if (plan.health.size > 0) {
            yield* query(
              `UPDATE ${t("endpoints")} e SET failing_since = h.failing_since, last_success_at = h.last_success_at
               FROM jsonb_to_recordset($1::jsonb) AS h(id text, failing_since bigint, last_success_at bigint)
               WHERE e.id = h.id`,
              [
                JSON.stringify(
                  [...plan.health].map(([id, health]) => ({
                    id,
                    failing_since: health.failingSince,
                    last_success_at: health.lastSuccessAt
                  }))
                )
              ]
            )
          }
          for (const { endpointId, reason } of plan.disable) {
            const changed = yield* query(
              `UPDATE ${t("endpoints")} SET enabled = 0, disabled_reason = $1, updated_at = $2
               WHERE id = $3 AND enabled = 1 RETURNING id`,
              [reason, now, endpointId]
            )
            if (changed.length > 0) {
              yield* bumpRevision
              yield* disableDeliveries(endpointId, now)
            }
          }
          const applied = completions.map(() => false)
          for (const { index } of plan.applied) applied[index] = true
          return { applied, published: plan.events }
        })
      ).pipe(
        Effect.tap(({ published }) =>
          published.length === 0 ? Effect.void : PubSub.publishAll(events, published)
        ),
        Effect.map(({ applied }) => applied)
      )

    // Checked before every attempt, so concurrent checks go to the database together (one statement
    // per batch), as sends do.
    const startAll = (leases: ReadonlyArray<Outbox.Lease>) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        // One statement: the deliveries of disabled endpoints are ended (fenced by the lease, so a
        // retaken one is left alone), and the others read; every part sees the same snapshot.
        const rows = yield* query(
          `WITH k AS (
             SELECT * FROM jsonb_to_recordset($1::jsonb) AS k(message_id text, endpoint_id text, lease_seq integer)
           ), ended AS (
             UPDATE ${t("deliveries")} d SET state = 'disabled', lease_owner = NULL, updated_at = $2
             FROM k, ${t("endpoints")} e
             WHERE d.message_id = k.message_id AND d.endpoint_id = k.endpoint_id AND d.lease_seq = k.lease_seq
               AND d.state = 'pending' AND e.id = d.endpoint_id AND e.enabled = 0
             RETURNING d.message_id, d.endpoint_id, d.lease_seq
           )
           SELECT k.message_id, k.endpoint_id, k.lease_seq,
             EXISTS (SELECT 1 FROM ended x
                     WHERE x.message_id = k.message_id AND x.endpoint_id = k.endpoint_id
                       AND x.lease_seq = k.lease_seq) AS ended,
             EXISTS (SELECT 1 FROM ${t("deliveries")} d JOIN ${t("endpoints")} e ON e.id = d.endpoint_id
                     WHERE d.message_id = k.message_id AND d.endpoint_id = k.endpoint_id
                       AND d.lease_seq = k.lease_seq AND d.state = 'pending' AND e.enabled = 1) AS live
           FROM k`,
          [
            JSON.stringify(
              leases.map((l) => ({
                message_id: l.messageId,
                endpoint_id: l.endpointId,
                lease_seq: l.leaseSeq
              }))
            ),
            now
          ]
        )
        // Keyed by the lease too: a batch may hold an old lease of a delivery beside its current one.
        const verdicts = new Map<string, Outbox.StartVerdict>()
        for (const row of rows) {
          verdicts.set(
            `${row["message_id"]}\u0000${row["endpoint_id"]}\u0000${Number(row["lease_seq"])}`,
            row["ended"] === true ? "disabled" : row["live"] === true ? "attempt" : "lost"
          )
        }
        return leases.map(
          (l) => verdicts.get(`${l.messageId}\u0000${l.endpointId}\u0000${l.leaseSeq}`) ?? "lost"
        )
      })
    const startBatch = yield* Store.groupCommit(startAll)

    // One batch of a prune, in one transaction. The scan reads a snapshot; the candidates'
    // deliveries are then locked and read again, so one reopened meanwhile (retry, recover) keeps its
    // message, and one reopened afterwards finds it gone.
    const pruneStep = (step: Store.PruneStep) =>
      transaction(
        Effect.gen(function* () {
          const states = JSON.stringify(step.states)
          const rows = yield* query(
            `SELECT m.id, m.created_at, NOT EXISTS (
                 SELECT 1 FROM ${t("deliveries")} d WHERE d.message_id = m.id
                   AND (d.state NOT IN (SELECT jsonb_array_elements_text($4::jsonb)) OR d.updated_at >= $5)
               ) AS prunable
             FROM ${t("messages")} m
             WHERE (m.created_at, m.id) > ($1, $2) AND m.created_at < $3
             ORDER BY m.created_at, m.id LIMIT $6`,
            [step.after.createdAt, step.after.id, step.upTo, states, step.before, step.size]
          )
          const last = rows.at(-1)
          const result = (pruned: Outbox.Pruned): Store.PruneStepResult => ({
            scanned: rows.length,
            last:
              last === undefined
                ? undefined
                : { createdAt: Number(last["created_at"]), id: last["id"] as string },
            pruned
          })
          const candidates = rows.flatMap((row) => (row["prunable"] === true ? [row["id"] as string] : []))
          if (candidates.length === 0) return result({ messages: 0, deliveries: 0, attempts: 0 })
          const locked = yield* query(
            `SELECT message_id, state, updated_at FROM ${t("deliveries")}
             WHERE message_id IN (SELECT jsonb_array_elements_text($1::jsonb))
             ORDER BY message_id, endpoint_id FOR UPDATE`,
            [JSON.stringify(candidates)]
          )
          const terminal = new Set<string>(step.states)
          const keep = new Set(
            locked.flatMap((row) =>
              terminal.has(row["state"] as string) && Number(row["updated_at"]) < step.before
                ? []
                : [row["message_id"] as string]
            )
          )
          const ids = candidates.filter((id) => !keep.has(id)).slice(0, step.take)
          if (ids.length === 0) return result({ messages: 0, deliveries: 0, attempts: 0 })
          const [counts] = yield* query(
            `WITH ids AS (SELECT jsonb_array_elements_text($1::jsonb) AS id),
             a AS (DELETE FROM ${t("attempts")} WHERE message_id IN (SELECT id FROM ids) RETURNING 1),
             d AS (DELETE FROM ${t("deliveries")} WHERE message_id IN (SELECT id FROM ids) RETURNING 1),
             m AS (DELETE FROM ${t("messages")} WHERE id IN (SELECT id FROM ids) RETURNING 1)
             SELECT (SELECT count(*) FROM a) AS attempts, (SELECT count(*) FROM d) AS deliveries,
               (SELECT count(*) FROM m) AS messages`,
            [JSON.stringify(ids)]
          )
          return result({
            messages: Number(counts?.["messages"] ?? 0),
            deliveries: Number(counts?.["deliveries"] ?? 0),
            attempts: Number(counts?.["attempts"] ?? 0)
          })
        })
      )

    return Outbox.Store.of({
      send: (message) => Effect.map(sendAll([message]), (sent) => sent[0]!),
      sendAll,
      message: (id) =>
        Effect.map(
          query(
            `SELECT id, event_type, payload, idempotency_key, created_at FROM ${t("messages")} WHERE id = $1`,
            [id]
          ),
          (rows) =>
            rows[0] === undefined
              ? Option.none()
              : Option.some(Store.decodeMessage(rows[0] as unknown as Store.MessageRow))
        ),
      deliveries,
      attempts: (key) =>
        Effect.map(
          query(
            `SELECT * FROM ${t("attempts")} WHERE message_id = $1 AND endpoint_id = $2 ORDER BY attempt`,
            [key.messageId, key.endpointId]
          ),
          (rows) => rows.map((row) => Store.decodeAttempt(row as unknown as Store.AttemptRow))
        ),
      retry: (key) =>
        transaction(
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const rows = yield* query(
              `UPDATE ${t("deliveries")} SET state = 'pending', manual = 1, next_at = $1, lease_owner = NULL, updated_at = $1
               WHERE message_id = $2 AND endpoint_id = $3 AND state <> 'pending'
                 AND endpoint_id IN (SELECT id FROM ${t("endpoints")} WHERE enabled = 1) RETURNING message_id`,
              [now, key.messageId, key.endpointId]
            )
            yield* signalAfterCommit
            return rows.length > 0
          })
        ),
      recover: (q) =>
        transaction(
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const rows =
              q.endpointId === undefined
                ? yield* query(
                    `UPDATE ${t("deliveries")} SET state = 'pending', manual = 1, next_at = $1, lease_owner = NULL, updated_at = $1
                     WHERE state IN ('failed', 'disabled') AND updated_at >= $2
                       AND endpoint_id IN (SELECT id FROM ${t("endpoints")} WHERE enabled = 1) RETURNING message_id`,
                    [now, q.since]
                  )
                : yield* query(
                    `UPDATE ${t("deliveries")} SET state = 'pending', manual = 1, next_at = $1, lease_owner = NULL, updated_at = $1
                     WHERE endpoint_id = $2 AND state IN ('failed', 'disabled') AND updated_at >= $3
                       AND endpoint_id IN (SELECT id FROM ${t("endpoints")} WHERE enabled = 1) RETURNING message_id`,
                    [now, q.endpointId, q.since]
                  )
            yield* signalAfterCommit
            return rows.length
          })
        ),
      events,
      endpoints: {
        insert: (endpoint) =>
          transaction(
            Effect.gen(function* () {
              const rows = yield* query(
                `INSERT INTO ${t("endpoints")} (id, url, event_types, keys, enabled, disabled_reason, rate_limit,
                   concurrency, metadata, created_at, updated_at, failing_since, last_success_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING RETURNING id`,
                [endpoint.id, ...Store.endpointColumns(endpoint)]
              )
              if (rows.length === 0) return false
              yield* bumpRevision
              yield* signalAfterCommit
              return true
            })
          ),
        get: (id) => Effect.map(readEndpoint(id, false), Option.fromNullishOr),
        list: Effect.map(query(`SELECT * FROM ${t("endpoints")} ORDER BY created_at, id`), (rows) =>
          rows.map((row) => Store.decodeEndpoint(row as unknown as Store.EndpointRow))
        ),
        update: (id, f) =>
          transaction(
            Effect.gen(function* () {
              const current = yield* readEndpoint(id, true)
              if (current === undefined) return Option.none()
              const now = yield* Clock.currentTimeMillis
              const next = f(current, now)
              yield* query(
                `UPDATE ${t("endpoints")} SET url = $1, event_types = $2, keys = $3, enabled = $4, disabled_reason = $5,
                   rate_limit = $6, concurrency = $7, metadata = $8, created_at = $9, updated_at = $10,
                   failing_since = $11, last_success_at = $12
                 WHERE id = $13`,
                [...Store.endpointColumns(next), id]
              )
              yield* bumpRevision
              if (current.enabled && !next.enabled) yield* disableDeliveries(id, now)
              yield* signalAfterCommit
              return Option.some(next)
            })
          ),
        remove: (id) =>
          transaction(
            Effect.gen(function* () {
              yield* query(`DELETE FROM ${t("attempts")} WHERE endpoint_id = $1`, [id])
              yield* query(`DELETE FROM ${t("deliveries")} WHERE endpoint_id = $1`, [id])
              const rows = yield* query(`DELETE FROM ${t("endpoints")} WHERE id = $1 RETURNING id`, [id])
              if (rows.length === 0) return false
              yield* bumpRevision
              yield* signalAfterCommit
              return true
            })
          ),
        revision
      },
      lease: (request) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const capacity = request.capacity
            .map(([endpointId, free]) => ({ endpoint_id: endpointId, n: Math.min(free, request.limit) }))
            .filter((c) => c.n > 0)
          if (capacity.length === 0) return []
          // One statement: pick per endpoint (oldest due first) skipping rows another worker is
          // leasing right now, and push their due time to the lease's end.
          const rows = yield* query(
            `WITH cap AS (
               SELECT c.value->>'endpoint_id' AS endpoint_id, (c.value->>'n')::integer AS n, c.ordinality AS i
               FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS c
             ), picked AS (
               SELECT d.message_id, d.endpoint_id FROM cap
               JOIN ${t("endpoints")} e ON e.id = cap.endpoint_id AND e.enabled = 1
               CROSS JOIN LATERAL (
                 SELECT message_id, endpoint_id, next_at FROM ${t("deliveries")} d
                 WHERE d.endpoint_id = cap.endpoint_id AND d.state = 'pending' AND d.next_at <= $2
                 ORDER BY d.next_at LIMIT cap.n
                 FOR UPDATE SKIP LOCKED
               ) d
               ORDER BY cap.i, d.next_at LIMIT $3
             )
             UPDATE ${t("deliveries")} d SET next_at = $4, lease_owner = $5, lease_seq = d.lease_seq + 1
             FROM picked p, ${t("messages")} m
             WHERE d.message_id = p.message_id AND d.endpoint_id = p.endpoint_id AND m.id = d.message_id
             RETURNING d.message_id, d.endpoint_id, d.lease_seq, d.attempts, d.manual, m.event_type, m.payload`,
            [JSON.stringify(capacity), now, request.limit, now + request.leaseMillis, request.owner]
          )
          return rows.map((row): Outbox.Lease => ({
            messageId: row["message_id"] as string,
            endpointId: row["endpoint_id"] as string,
            eventType: row["event_type"] as string,
            payload: row["payload"] as string,
            leaseSeq: Number(row["lease_seq"]),
            leaseUntil: now + request.leaseMillis,
            attempt: Number(row["attempts"]) + 1,
            manual: Number(row["manual"]) === 1
          }))
        }),
      complete: (completions, { disableAfter }) =>
        completions.length === 0 ? Effect.succeed([]) : complete(completions, disableAfter),
      start: startBatch,
      release: (leases) =>
        leases.length === 0
          ? Effect.void
          : Effect.gen(function* () {
              const now = yield* Clock.currentTimeMillis
              yield* query(
                `UPDATE ${t("deliveries")} d SET next_at = $1, lease_owner = NULL
                 FROM jsonb_to_recordset($2::jsonb) AS k(message_id text, endpoint_id text, lease_seq integer)
                 WHERE d.message_id = k.message_id AND d.endpoint_id = k.endpoint_id AND d.lease_seq = k.lease_seq
                   AND d.state = 'pending'`,
                [
                  now,
                  JSON.stringify(
                    leases.map((l) => ({
                      message_id: l.messageId,
                      endpoint_id: l.endpointId,
                      lease_seq: l.leaseSeq
                    }))
                  )
                ]
              )
              changes.signal()
            }),
      nextDue: Effect.map(
        query(
          `SELECT MIN(x.next_at) AS due FROM ${t("endpoints")} e
           CROSS JOIN LATERAL (
             SELECT next_at FROM ${t("deliveries")} d
             WHERE d.endpoint_id = e.id AND d.state = 'pending' ORDER BY d.next_at LIMIT 1
           ) x
           WHERE e.enabled = 1`
        ),
        (rows) => (rows[0]?.["due"] == null ? Option.none() : Option.some(Number(rows[0]["due"])))
      ),
      sweep: Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.map(
          query(
            `UPDATE ${t("deliveries")} SET state = 'disabled', lease_owner = NULL, updated_at = $1
             WHERE state = 'pending' AND next_at <= $1
               AND endpoint_id IN (SELECT id FROM ${t("endpoints")} WHERE enabled = 0) RETURNING message_id`,
            [now]
          ),
          (rows) => rows.length
        )
      ),
      prune: (q) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => Store.prune(q, now, idempotencyWindow, pruneStep)),
      changed: changes.wait
    })
  })
