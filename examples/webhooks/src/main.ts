/**
 * Starts the webhooks example in one process: the sender (shop, outbox, dispatcher, delivery log) on
 * PORT (default 3100) and the receiver on RECEIVER_PORT (default 3101), with the receiver registered
 * as an endpoint of the sender. Settings, all from the environment:
 *
 * - DATA_DIR (default `.data/`): the outbox and orders (`sender.db`), the receiver's inbox
 *   (`receiver.db`) and the shared signing secret (`webhook-secret`).
 * - WEBHOOK_SECRET: the `whsec_…` secret both sides use; made once and kept in DATA_DIR otherwise.
 * - DATABASE_URL: the outbox and orders in Postgres instead (OutboxPostgres), so several sender
 *   processes share the deliveries; start the others with RECEIVER_PORT=off and another PORT.
 * - REDIS_URL: the receiver's replay cache in Redis instead of memory (ReplayCacheRedis).
 * - HOST (default 127.0.0.1): where both listen. The sender's API has no login: keep it local.
 */
import { NodeRuntime } from "@effect/platform-node"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Signature } from "@strata/webhooks"
import * as Outbox from "@strata/webhooks/Outbox"
import { startReceiver, startSender } from "./serve.ts"
import * as Sender from "./sender.ts"

const settings = Config.all({
  port: Config.Port("PORT").pipe(Config.withDefault(3100)),
  receiverPort: Config.String("RECEIVER_PORT").pipe(Config.withDefault("3101")),
  host: Config.String("HOST").pipe(Config.withDefault("127.0.0.1")),
  dataDir: Config.String("DATA_DIR").pipe(Config.withDefault(".data")),
  secret: Config.option(Config.Redacted("WEBHOOK_SECRET")),
  databaseUrl: Config.option(Config.Redacted("DATABASE_URL")),
  redisUrl: Config.option(Config.String("REDIS_URL"))
})

/** The endpoint id of the local receiver. */
const localEndpoint = "local-receiver"

/** The shared secret: WEBHOOK_SECRET, or one made once and kept in the data directory. */
const loadSecret = (dataDir: string, fromEnv: Option.Option<Redacted.Redacted<string>>): Signature.Secret => {
  if (Option.isSome(fromEnv)) return Signature.secretV1(Redacted.value(fromEnv.value))
  const file = join(dataDir, "webhook-secret")
  if (!existsSync(file)) writeFileSync(file, Sender.secretText(Signature.generateV1()), { mode: 0o600 })
  return Signature.secretV1(readFileSync(file, "utf8").trim())
}

const program = Effect.gen(function* () {
  const config = yield* settings
  mkdirSync(config.dataDir, { recursive: true })
  const secret = loadSecret(config.dataDir, config.secret)
  const redisUrl = Option.getOrUndefined(config.redisUrl)
  const withReceiver = config.receiverPort !== "off"

  const receiver = withReceiver
    ? yield* startReceiver({
        port: Number(config.receiverPort),
        host: config.host,
        secret,
        inbox: join(config.dataDir, "receiver.db"),
        redisUrl
      })
    : undefined

  const services = Option.match(config.databaseUrl, {
    onNone: () => Sender.layerSqlite({ filename: join(config.dataDir, "sender.db") }),
    onSome: (url) => Sender.layerPostgres({ url })
  })
  const sender = yield* startSender({
    port: config.port,
    host: config.host,
    services,
    // Signs the forms' CSRF cookie; a restart only makes open pages' forms stale.
    csrfKey: Redacted.make(randomBytes(32).toString("base64url"))
  })

  if (receiver !== undefined) {
    // Registered on 127.0.0.1 whatever HOST is: the address the dispatcher's SSRF guard allows.
    const port = new URL(receiver.url).port
    yield* Effect.provideContext(
      Sender.ensureEndpoint(localEndpoint, `http://127.0.0.1:${port}/webhooks`, secret),
      sender.context
    )
  }

  // What the store reports to the application: endpoints disabled, deliveries dead-lettered.
  yield* Effect.forkScoped(
    Stream.runForEach(Outbox.events, (event) => Effect.logWarning("webhooks", event)).pipe(
      Effect.provideContext(sender.context)
    )
  )

  const s = sender.url
  const json = `-H 'content-type: application/json'`
  yield* Effect.sync(() =>
    console.log(
      [
        `Strata webhooks example`,
        `  sender    ${s}/            the shop: create, pay and refund orders`,
        `            ${s}/deliveries  the delivery log: attempts, retries, retry and recover`,
        receiver === undefined
          ? `  receiver  not started here (RECEIVER_PORT=off)`
          : `  receiver  ${receiver.url}/            what arrived, verified, once per webhook-id`,
        `  outbox: ${Option.isSome(config.databaseUrl) ? "Postgres (DATABASE_URL)" : `SQLite in ${join(config.dataDir, "sender.db")}`}` +
          `; replay cache: ${redisUrl === undefined ? "memory" : "Redis (REDIS_URL)"}`,
        ``,
        `Try:`,
        `  curl ${json} -d '{"customer":"ada@example.com","items":[{"sku":"book-42","quantity":2}],"total":{"amount":3998,"currency":"EUR"}}' ${s}/api/orders`,
        `  curl ${json} -d '{}' ${s}/api/orders/<order id>/pay`,
        `  curl ${json} -d '{"reason":"damaged"}' ${s}/api/orders/<order id>/refund`,
        `  curl ${s}/api/deliveries`,
        ...(receiver === undefined ? [] : [`  curl ${receiver.url}/api/received`]),
        `  # an endpoint nobody listens on: its deliveries fail and are retried (5 s, 5 min, 30 min, …)`,
        `  curl ${json} -d '{"url":"http://127.0.0.1:9/webhooks"}' ${s}/api/endpoints`,
        `  # a private address: refused when registered (400 InvalidEndpoint, the SSRF rules)`,
        `  curl ${json} -d '{"url":"http://10.0.0.1/webhooks"}' ${s}/api/endpoints`,
        `  # re-send once what failed or was disabled in the last 24 hours`,
        `  curl ${json} -d '{}' ${s}/api/recover`,
        ...(receiver === undefined
          ? []
          : [
              `  # a forged delivery: 401, and nothing recorded`,
              `  curl -i ${json} -H 'webhook-id: msg_forged' -H "webhook-timestamp: $(date +%s)" -H 'webhook-signature: v1,Zm9yZ2Vk' \\`,
              `    -d '{"type":"order.paid","timestamp":"2025-01-01T00:00:00Z","data":{"orderId":"x","total":{"amount":1,"currency":"EUR"}}}' ${receiver.url}/webhooks`
            ]),
        `Press Ctrl+C to stop.`
      ].join("\n")
    )
  )
  return yield* Effect.never
})

program.pipe(Effect.scoped, NodeRuntime.runMain)
