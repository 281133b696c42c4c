/**
 * Starts the chat example on PORT (default 3200) and HOST (127.0.0.1): sessions and room histories
 * in SQLite under DATA_DIR (default `.data/`), or with REDIS_URL in Redis, shared by several
 * processes. Sessions are signed with SESSION_KEYS (comma-separated, newest first) or with a key
 * made once and kept in DATA_DIR, so logins and histories outlast a restart.
 */
import { NodeRuntime } from "@effect/platform-node"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as HttpServer from "effect/http/HttpServer"
import { server, sessionKeys } from "./app.ts"
import { demoLogins } from "./Users.ts"

const config = Config.all({
  port: Config.Int("PORT").pipe(Config.withDefault(3200)),
  host: Config.String("HOST").pipe(Config.withDefault("127.0.0.1")),
  dataDir: Config.String("DATA_DIR").pipe(Config.withDefault(".data")),
  redisUrl: Config.option(Config.Redacted("REDIS_URL")),
  sessionKeys: Config.option(Config.Redacted("SESSION_KEYS")),
  production: Config.String("NODE_ENV").pipe(
    Config.map((env) => env === "production"),
    Config.withDefault(false)
  )
})

const banner = (redis: boolean) =>
  Layer.effectDiscard(
    Effect.gen(function* () {
      const url = HttpServer.formatAddress((yield* HttpServer.HttpServer).address)
      yield* Effect.sync(() =>
        console.log(
          [
            `Strata chat example listening on ${url}`,
            `  open ${url}/ in two browsers (or a private window) and log in as:`,
            ...demoLogins.map(
              (l) =>
                `    ${l.username} / ${l.password}${l.user.role === "admin" ? "   (admin: may join Staff)" : ""}`
            ),
            redis
              ? `  fan-out and sessions in Redis: start more processes with the same REDIS_URL and SESSION_KEYS`
              : `  room histories survive a restart: stop the server, start it again, the page resumes`,
            `Press Ctrl+C to stop.`
          ].join("\n")
        )
      )
    })
  )

Layer.unwrap(
  Effect.map(config, (c) => {
    const redisUrl = Option.getOrUndefined(Option.map(c.redisUrl, Redacted.value))
    const app = server({
      port: c.port,
      host: c.host,
      dataDir: c.dataDir,
      redisUrl,
      keys: sessionKeys(c.dataDir, Option.getOrUndefined(Option.map(c.sessionKeys, Redacted.value))),
      secureCookies: c.production
    })
    return banner(redisUrl !== undefined).pipe(Layer.provideMerge(app))
  })
).pipe(Layer.launch, NodeRuntime.runMain)
