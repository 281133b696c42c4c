/**
 * Starts the REST example on PORT (default 3000): sessions in SQLite under DATA_DIR (default
 * `.data/`), signed with SESSION_KEYS (comma-separated, newest first) or with a key made once and
 * kept in DATA_DIR, so logins survive restarts. With REDIS_URL, sessions and rate-limit counters
 * live in Redis, so several processes (with the same SESSION_KEYS) serve the same users.
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as HttpServer from "effect/http/HttpServer"
import { randomBytes } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { createServer } from "node:http"
import { join } from "node:path"
import { App, RateLimit } from "@strata/core"
import * as RateLimitRedis from "@strata/core/RateLimitRedis"
import * as SessionRedis from "@strata/core/SessionRedis"
import * as SessionSqlite from "@strata/core/SessionSqlite"
import { makeApp } from "./app.ts"
import { demoTokens } from "./Auth.ts"
import * as Notes from "./Notes.ts"
import * as Users from "./Users.ts"

const port = Number(process.env["PORT"] ?? 3000)
const host = process.env["HOST"] ?? "127.0.0.1"
const dataDir = process.env["DATA_DIR"] ?? ".data"
const redisUrl = process.env["REDIS_URL"] || undefined
mkdirSync(dataDir, { recursive: true })

const sessionKeys = (): ReadonlyArray<Redacted.Redacted<string>> => {
  const fromEnv = process.env["SESSION_KEYS"]
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv.split(",").map((k) => Redacted.make(k.trim()))
  const file = join(dataDir, "session.key")
  if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString("base64url"), { mode: 0o600 })
  return [Redacted.make(readFileSync(file, "utf8").trim())]
}

const banner = Layer.effectDiscard(
  Effect.gen(function* () {
    const url = HttpServer.formatAddress((yield* HttpServer.HttpServer).address)
    const [token] = Object.keys(demoTokens)
    yield* Effect.sync(() =>
      console.log(
        [
          `Strata REST example listening on ${url}`,
          `  open ${url}/ and log in as ${Users.demoLogins.map((l) => `${l.username} / ${l.password}`).join(" or ")}`,
          `  curl -H 'authorization: Bearer ${token}' ${url}/api/notes`,
          `  curl -H 'authorization: Bearer ${token}' -H 'content-type: application/json' -d '{"title":"hi","body":"there"}' ${url}/api/notes`,
          `  curl -i ${url}/api/notes            # 401 with WWW-Authenticate and x-request-id`,
          `Press Ctrl+C to stop.`
        ].join("\n")
      )
    )
  })
)

App.serve(makeApp(sessionKeys())).pipe(
  Layer.merge(banner),
  Layer.provide(
    Layer.mergeAll(
      Notes.layerMemory,
      Users.layer,
      redisUrl === undefined
        ? SessionSqlite.layer({ filename: join(dataDir, "sessions.db") })
        : SessionRedis.layerFromUrl(redisUrl, { prefix: "notes:session:" }),
      redisUrl === undefined
        ? RateLimit.layerMemory()
        : RateLimitRedis.layerFromUrl(redisUrl, { prefix: "notes:ratelimit:" })
    )
  ),
  Layer.provide(NodeHttpServer.layer(createServer, { port, host })),
  Layer.launch,
  NodeRuntime.runMain
)
