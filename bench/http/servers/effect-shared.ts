/**
 * What the two Effect servers (Strata and raw Effect) share: the payload schema, the logger and the
 * port announcement.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Schema from "effect/Schema"
import * as HttpServer from "effect/http/HttpServer"
import { announce, limits, logSink, platforms } from "../shared.ts"

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

const text = ([min, max]: readonly [number, number]) => Schema.String.check(Schema.isBetweenLength(min, max))
const between = ([minimum, maximum]: readonly [number, number]) => Schema.isBetween({ minimum, maximum })

/**
 * The `json-schema` workload's payload as an Effect Schema, from the same `limits` as the Fastify JSON
 * Schema and `validateNewUser`.
 */
export const NewUser = Schema.Struct({
  username: text(limits.username),
  email: text(limits.email),
  age: Schema.Int.check(between(limits.age)),
  profile: Schema.Struct({
    displayName: text(limits.displayName),
    bio: text(limits.bio),
    locale: text(limits.locale),
    address: Schema.Struct({
      street: text(limits.street),
      city: text(limits.city),
      postcode: text(limits.postcode),
      country: text(limits.country)
    })
  }),
  devices: Schema.Array(
    Schema.Struct({
      id: text(limits.deviceId),
      platform: Schema.Literals(platforms),
      lastSeen: Schema.Int.check(between(limits.lastSeen)),
      trusted: Schema.Boolean
    })
  ).check(Schema.isBetweenLength(limits.devices[0], limits.devices[1])),
  score: Schema.Finite.check(between(limits.score)),
  newsletter: Schema.Boolean
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
