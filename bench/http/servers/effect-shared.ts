/**
 * What the two Effect servers (Strata and raw Effect) share: the payload schema, the logger and the
 * port announcement.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Schema from "effect/Schema"
import * as HttpServer from "effect/http/HttpServer"
import { announce, logSink } from "../shared.ts"

/**
 * The `json` workload's payload as an Effect Schema: the same rules as `validateOrder` and the
 * Fastify JSON Schema. Unknown keys are dropped by decoding (Schema's default).
 */
export const Order = Schema.Struct({
  id: Schema.String,
  customer: Schema.Struct({ name: Schema.String, email: Schema.String, vip: Schema.Boolean }),
  items: Schema.Array(
    Schema.Struct({
      sku: Schema.String,
      quantity: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
      price: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
    })
  ),
  tags: Schema.Array(Schema.String),
  note: Schema.String,
  createdAt: Schema.String
})

/**
 * Replaces Effect's default (console) logger with one that formats each entry as a JSON line and
 * writes it to the same sink as the other servers: a request costs the formatting and the write,
 * as with a real JSON logger, but nothing reaches a terminal.
 */
export const JsonLogger = Logger.layer([
  Logger.map(Logger.formatJson, (line) => {
    logSink.write(line + "\n")
  })
])

/**
 * Once the server listens (on port 0), tells the runner the port the OS chose. Merged next to the
 * app so it is built after `NodeHttpServer.layer` has bound the socket.
 */
export const AnnouncePort = Layer.effectDiscard(
  Effect.flatMap(HttpServer.HttpServer, (server) =>
    Effect.sync(() => {
      if ("port" in server.address) announce(server.address.port)
    })
  )
)
