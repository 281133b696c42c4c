/**
 * Topic fan-out for one process whose topic histories live in a SQLite file (Node's `node:sqlite`),
 * so they outlast a restart: a client that reconnects to the restarted server resumes with
 * `Recovered` and the events it missed. `@strata/ws` ships an in-memory fan-out (histories die with
 * the process) and a Redis one; this is the `PubSub` service of the ws package over SQLite.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { PubSub } from "@strata/ws"
import { DatabaseSync, type StatementSync } from "node:sqlite"

/** Options of the SQLite fan-out. */
export interface Options {
  /** The database file (created if missing), or `":memory:"`. */
  readonly filename: string
}

interface TopicRow {
  readonly epoch: string
  readonly last: number | bigint
}

interface EventRow {
  readonly seq: number | bigint
  readonly payload: string
}

const failure = (reason: string) => (cause: unknown) => new PubSub.PubSubError({ reason, cause })

/**
 * Makes the fan-out; the database is closed with the scope. Events are delivered to this process's
 * hubs only (several processes need `PubSubRedis`); presence is kept in memory, since every member
 * is a connection of this process and leaves with it.
 */
export const make = (
  options: Options
): Effect.Effect<PubSub.PubSub["Service"], PubSub.PubSubError, Scope.Scope> =>
  Effect.gen(function* () {
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new DatabaseSync(options.filename, { timeout: 5_000 }),
        catch: failure(`cannot open ${options.filename}`)
      }),
      (opened) => Effect.sync(() => (opened.isOpen ? opened.close() : undefined))
    )
    const sql = yield* Effect.try({
      try: () => {
        if (options.filename !== ":memory:") db.exec("PRAGMA journal_mode = WAL")
        db.exec(
          `CREATE TABLE IF NOT EXISTS ws_topics (
             topic TEXT PRIMARY KEY NOT NULL,
             epoch TEXT NOT NULL,
             last INTEGER NOT NULL
           ) WITHOUT ROWID;
           CREATE TABLE IF NOT EXISTS ws_events (
             topic TEXT NOT NULL,
             seq INTEGER NOT NULL,
             payload TEXT NOT NULL,
             PRIMARY KEY (topic, seq)
           ) WITHOUT ROWID;`
        )
        return {
          topic: db.prepare("SELECT epoch, last FROM ws_topics WHERE topic = ?"),
          create: db.prepare("INSERT OR IGNORE INTO ws_topics (topic, epoch, last) VALUES (?, ?, 0)"),
          advance: db.prepare("UPDATE ws_topics SET last = last + 1 WHERE topic = ? RETURNING epoch, last"),
          append: db.prepare("INSERT INTO ws_events (topic, seq, payload) VALUES (?, ?, ?)"),
          trim: db.prepare("DELETE FROM ws_events WHERE topic = ? AND seq <= ?"),
          events: db.prepare("SELECT seq, payload FROM ws_events WHERE topic = ? ORDER BY seq")
        } satisfies Record<string, StatementSync>
      },
      catch: failure(`cannot prepare the history tables in ${options.filename}`)
    })

    // The topic's row, made with a fresh epoch the first time the topic is used.
    const topicRow = (topic: string): TopicRow => {
      sql.create.run(topic, PubSub.makeEpoch())
      return sql.topic.get(topic) as unknown as TopicRow
    }

    // One transaction per event: the offset is taken, the event kept and the history trimmed
    // together, so a crash never leaves an offset without its event.
    const append = (topic: string, payload: string, history: number) => {
      db.exec("BEGIN IMMEDIATE")
      try {
        sql.create.run(topic, PubSub.makeEpoch())
        const row = sql.advance.get(topic) as unknown as TopicRow
        const offset = Number(row.last)
        sql.append.run(topic, offset, payload)
        sql.trim.run(topic, offset - history)
        db.exec("COMMIT")
        return { offset, epoch: row.epoch }
      } catch (cause) {
        if (db.isTransaction) db.exec("ROLLBACK")
        throw cause
      }
    }

    const handlers = new Set<(event: PubSub.Event) => Effect.Effect<void>>()
    const presence = PubSub.makeMemory().presence

    return {
      listen: (onEvent) =>
        Effect.acquireRelease(
          Effect.sync(() => void handlers.add(onEvent)),
          () => Effect.sync(() => void handlers.delete(onEvent))
        ),
      publish: (input) =>
        Effect.flatMap(
          input.history > 0
            ? Effect.try({
                try: () => append(input.topic, input.payload, input.history),
                catch: failure("cannot keep the event in SQLite")
              })
            : Effect.succeed({ offset: 0, epoch: "" }),
          (position) => {
            const event: PubSub.Event = { topic: input.topic, payload: input.payload, ...position }
            const delivered: PubSub.Event =
              input.except === undefined ? event : { ...event, except: input.except }
            return Effect.as(
              Effect.forEach(handlers, (handler) => handler(delivered), { discard: true }),
              position
            )
          }
        ),
      replay: (topic, from) =>
        Effect.try({
          try: () => {
            const row = topicRow(topic)
            const events =
              from === undefined
                ? []
                : (sql.events.all(topic) as unknown as ReadonlyArray<EventRow>).map((e) => ({
                    offset: Number(e.seq),
                    payload: e.payload
                  }))
            return PubSub.replayFrom(row.epoch, Number(row.last), events, from)
          },
          catch: failure("cannot read a topic's history from SQLite")
        }),
      presence
    } satisfies PubSub.PubSub["Service"]
  })

/**
 * The SQLite fan-out as the `PubSub` of `Hub.layerWith()`. Failing to open the file fails the
 * layer, so the server does not start without its history.
 */
export const layer = (options: Options): Layer.Layer<PubSub.PubSub, PubSub.PubSubError> =>
  Layer.effect(PubSub.PubSub)(make(options))
