/**
 * A session store in SQLite on Node 24's built-in `node:sqlite` (no native build). Use it when sessions
 * must survive a restart of one server, or when a few processes on one machine share a database file.
 * Why not `effect/sql`: its Effect 4 SQLite driver is only a beta, and four statements need no query layer.
 *
 * @since 0.1.0
 */
import { DatabaseSync, type StatementSync } from "node:sqlite"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Session from "./Session.ts"

/**
 * Options of the SQLite store.
 *
 * @category models
 */
export interface Options {
  /** A file path, or `":memory:"` for a database that lives as long as the layer. */
  readonly filename: string
  /** The table, created if missing; default `strata_sessions`. Must match `[A-Za-z_][A-Za-z0-9_]*`. */
  readonly table?: string | undefined
  /** How often expired rows are deleted; default one minute. */
  readonly sweepEvery?: Duration.Input | undefined
}

const identifier = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

interface Row {
  readonly data: string
  readonly meta: string
  readonly created_at: number
  readonly expires_at: number
}

const storeError = (cause: unknown) => new Session.StoreError({ cause })

// node:sqlite throws; every call goes through here so a failure is a typed 503, never a defect.
const attempt = <A>(f: () => A): Effect.Effect<A, Session.StoreError> =>
  Effect.try({ try: f, catch: storeError })

const decodeMeta = (text: string): { readonly [key: string]: string } => {
  const meta: unknown = JSON.parse(text)
  if (
    typeof meta !== "object" ||
    meta === null ||
    Array.isArray(meta) ||
    Object.values(meta).some((value) => typeof value !== "string")
  ) {
    throw new Error("session meta is not an object of strings")
  }
  return meta as { readonly [key: string]: string }
}

/**
 * A session store in a SQLite table (created if missing, with an index on the expiry). Files are
 * opened in WAL mode; expired rows are never returned and are deleted every `sweepEvery`; the
 * database is closed with the layer. Opening a path that is not a database fails the layer with
 * `SessionStoreError`, as does any later SQLite failure of a request (503).
 *
 * @example
 * ```ts
 * import * as SessionSqlite from "@strata/core/SessionSqlite"
 *
 * const handler = App.toWebHandler(app, SessionSqlite.layer({ filename: "sessions.db" }))
 * ```
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Session.Store, Session.StoreError> => {
  const table = options.table ?? "strata_sessions"
  // The name is spliced into SQL (placeholders cannot name tables), so only identifiers pass.
  if (!identifier.test(table)) {
    throw new Error(
      `SessionSqlite: table must be an identifier matching ${identifier}, got ${JSON.stringify(table)}`
    )
  }
  const sweepEvery = options.sweepEvery ?? "1 minute"
  return Layer.effect(Session.Store)(
    Effect.gen(function* () {
      const db = yield* Effect.acquireRelease(
        attempt(() => new DatabaseSync(options.filename, { timeout: 5_000 })),
        (opened) => Effect.sync(() => (opened.isOpen ? opened.close() : undefined))
      )
      const statements = yield* attempt(() => {
        if (options.filename !== ":memory:" && options.filename !== "") db.exec("PRAGMA journal_mode = WAL")
        db.exec(
          `CREATE TABLE IF NOT EXISTS "${table}" (
            id TEXT PRIMARY KEY NOT NULL,
            data TEXT NOT NULL,
            meta TEXT NOT NULL CHECK (json_valid(meta)),
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
          );
          CREATE INDEX IF NOT EXISTS "${table}_expires_at" ON "${table}" (expires_at);`
        )
        return {
          get: db.prepare(
            `SELECT data, meta, created_at, expires_at FROM "${table}" WHERE id = ? AND expires_at > ?`
          ),
          set: db.prepare(
            `INSERT INTO "${table}" (id, data, meta, created_at, expires_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, meta = excluded.meta,
               created_at = excluded.created_at, expires_at = excluded.expires_at`
          ),
          delete: db.prepare(`DELETE FROM "${table}" WHERE id = ?`),
          sweep: db.prepare(`DELETE FROM "${table}" WHERE expires_at <= ?`)
        } satisfies Record<string, StatementSync>
      })

      const sweep = Effect.flatMap(Clock.currentTimeMillis, (now) => attempt(() => statements.sweep.run(now)))
      // A failed sweep (database busy, disk full) is logged and retried at the next tick; reads never
      // return expired rows anyway.
      yield* Effect.forkScoped(
        Effect.forever(
          Effect.andThen(
            Effect.sleep(sweepEvery),
            Effect.ignore(sweep, {
              log: "Warn",
              message: "SessionSqlite: sweeping expired sessions failed"
            })
          )
        )
      )

      return Session.Store.of({
        get: (id) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            attempt(() => {
              const row = statements.get.get(id, now) as Row | undefined
              if (row === undefined) return Option.none()
              return Option.some<Session.StoredSession>({
                data: row.data,
                meta: decodeMeta(row.meta),
                createdAt: Number(row.created_at),
                expiresAt: Number(row.expires_at)
              })
            })
          ),
        set: (id, record) =>
          attempt(
            () =>
              void statements.set.run(
                id,
                record.data,
                JSON.stringify(record.meta),
                record.createdAt,
                record.expiresAt
              )
          ),
        delete: (id) => attempt(() => void statements.delete.run(id))
      })
    })
  )
}
