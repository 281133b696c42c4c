/**
 * Real sockets: the dispatcher, through the SSRF-guarded undici client (allowlisting 127.0.0.1),
 * POSTs to a node:http receiver on 127.0.0.1 that verifies every delivery with the independent
 * `standardwebhooks` package.
 */
import { describe, expect, it } from "@effect/vitest"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { Webhook } from "standardwebhooks"
import * as Catalog from "../src/Catalog.ts"
import * as Dispatcher from "../src/Dispatcher.ts"
import * as Endpoint from "../src/Endpoint.ts"
import * as Outbox from "../src/Outbox.ts"
import * as OutboxSqlite from "../src/OutboxSqlite.ts"
import * as Retry from "../src/Retry.ts"
import * as Signature from "../src/Signature.ts"
import * as Ssrf from "../src/Ssrf.ts"

const events = Catalog.make({
  "user.created": Schema.Struct({ id: Schema.String, email: Schema.String })
})

interface Hit {
  readonly path: string
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
  readonly verified: boolean
}

type Reply = (hit: Hit, response: http.ServerResponse) => void

/** A receiver on 127.0.0.1 verifying with standardwebhooks; `reply` answers each hit. */
const receiver = (secrets: ReadonlyArray<string>, reply: Reply) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<{ readonly url: string; readonly hits: Array<Hit>; readonly server: http.Server }>(
          (resolve) => {
            const hits: Array<Hit> = []
            const server = http.createServer((request, response) => {
              const chunks: Array<Buffer> = []
              request.on("data", (chunk: Buffer) => chunks.push(chunk))
              request.on("end", () => {
                const body = Buffer.concat(chunks).toString("utf8")
                const verified = secrets.every((secret) => {
                  try {
                    new Webhook(secret).verify(body, request.headers as Record<string, string>)
                    return true
                  } catch {
                    return false
                  }
                })
                const hit = { path: request.url ?? "", headers: request.headers, body, verified }
                hits.push(hit)
                reply(hit, response)
              })
            })
            server.listen(0, "127.0.0.1", () => {
              const { port } = server.address() as AddressInfo
              resolve({ url: `http://127.0.0.1:${port}`, hits, server })
            })
          }
        )
    ),
    ({ server }) =>
      Effect.promise(
        () =>
          new Promise<void>((resolve) => {
            server.closeAllConnections()
            server.close(() => resolve())
          })
      )
  )

// The receiver is on loopback: allowed where endpoints are registered and where they are dialled.
const allow = ["127.0.0.1/32"]
const local = Ssrf.layerHttpClient({ allow })

const world = (
  policy: Retry.Policy,
  client: Layer.Layer<import("effect/http/HttpClient").HttpClient> = local
) =>
  Dispatcher.layer({ policy, pollInterval: "50 millis" }).pipe(
    Layer.provideMerge(OutboxSqlite.layer({ filename: ":memory:", allowEndpoints: allow })),
    Layer.provide(client)
  )

const waitFor = <A, E, R>(check: Effect.Effect<A | undefined, E, R>, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) {
      const value = yield* check
      if (value !== undefined) return value
      yield* Effect.sleep("25 millis")
    }
    return yield* Effect.die(new Error(`timed out waiting for ${what}`))
  })

const ended = (messageId: string, endpointId: string) =>
  waitFor(
    Effect.map(Outbox.deliveries({ messageId, endpointId }), ([d]) =>
      d !== undefined && d.state !== "pending" ? d : undefined
    ),
    "the delivery to end"
  )

const secretText = (secret: Signature.Secret) => (secret.version === "v1" ? Redacted.value(secret.key) : "")

describe("end to end over real sockets", () => {
  it.live(
    "a catalog event is signed, POSTed and verified by standardwebhooks; rotation signs with both keys",
    () =>
      Effect.gen(function* () {
        const oldKey = Signature.generateV1()
        const newKey = Signature.generateV1()
        const server = yield* receiver([secretText(oldKey), secretText(newKey)], (_hit, response) => {
          response.writeHead(204).end()
        })
        yield* Effect.gen(function* () {
          const endpoints = yield* Endpoint.Endpoints
          const ep = yield* endpoints.create({ url: `${server.url}/hooks`, keys: [oldKey] })
          yield* endpoints.rotate(ep.id, { secret: newKey, overlap: "1 hour" })
          const sent = yield* Outbox.send(events, "user.created", { id: "u_1", email: "ada@example.com" })
          const delivery = yield* ended(sent.id, ep.id)
          expect(delivery.state).toBe("delivered")
          const [hit] = server.hits
          expect(hit!.verified).toBe(true)
          expect(hit!.path).toBe("/hooks")
          expect(hit!.headers["webhook-id"]).toBe(sent.id)
          expect(hit!.headers["content-type"]).toBe("application/json")
          expect(String(hit!.headers["webhook-signature"]).split(" ").length).toBe(2)
          expect(Math.abs(Number(hit!.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(10)
          expect(JSON.parse(hit!.body)).toMatchObject({
            type: "user.created",
            data: { id: "u_1", email: "ada@example.com" }
          })
          // The traced client adds no trace headers for third parties to see.
          expect(hit!.headers["traceparent"]).toBeUndefined()
          expect(hit!.headers["b3"]).toBeUndefined()
        }).pipe(Effect.provide(world(Retry.make({ timeout: "2 seconds" }))))
      })
  )

  it.live("a redirect is a failed attempt, never followed; the body kept is cut at 4 KiB", () =>
    Effect.gen(function* () {
      const key = Signature.generateV1()
      const server = yield* receiver([secretText(key)], (hit, response) => {
        if (hit.path === "/moved") response.writeHead(200).end()
        else response.writeHead(302, { location: "/moved" }).end("é".repeat(5000))
      })
      yield* Effect.gen(function* () {
        const ep = yield* Effect.flatMap(Endpoint.Endpoints, (e) =>
          e.create({ url: `${server.url}/hooks`, keys: [key] })
        )
        const sent = yield* Outbox.sendEncoded({ eventType: "t", payload: "{}" })
        const delivery = yield* ended(sent.id, ep.id)
        expect(delivery.state).toBe("failed")
        expect(server.hits.map((h) => h.path)).toEqual(["/hooks"])
        const [attempt] = yield* Outbox.attempts({ messageId: sent.id, endpointId: ep.id })
        expect(attempt!.status).toBe(302)
        expect(Buffer.byteLength(attempt!.responseBody)).toBe(4096)
        expect(attempt!.responseBody).toBe("é".repeat(2048))
      }).pipe(Effect.provide(world(Retry.make({ schedule: [], timeout: "2 seconds" }))))
    })
  )

  it.live(
    "a receiver that does not answer in time is a timeout; one that is refused by the SSRF guard is an error",
    () =>
      Effect.gen(function* () {
        const key = Signature.generateV1()
        const server = yield* receiver([secretText(key)], () => {
          // never answers
        })
        yield* Effect.gen(function* () {
          const ep = yield* Effect.flatMap(Endpoint.Endpoints, (e) =>
            e.create({ url: `${server.url}/slow`, keys: [key] })
          )
          const sent = yield* Outbox.sendEncoded({ eventType: "t", payload: "{}" })
          yield* ended(sent.id, ep.id)
          const [attempt] = yield* Outbox.attempts({ messageId: sent.id, endpointId: ep.id })
          expect(attempt).toMatchObject({ status: null, result: "failed" })
          expect(attempt!.error).toContain("timed out")
          expect(attempt!.durationMs).toBeGreaterThanOrEqual(290)
        }).pipe(Effect.provide(world(Retry.make({ schedule: [], timeout: "300 millis" }))))
        // Without the allowlist, the guard refuses 127.0.0.1 before any byte is sent.
        const before = server.hits.length
        yield* Effect.gen(function* () {
          const ep = yield* Effect.flatMap(Endpoint.Endpoints, (e) =>
            e.create({ url: `${server.url}/guarded`, keys: [key] })
          )
          const sent = yield* Outbox.sendEncoded({ eventType: "t", payload: "{}" })
          yield* ended(sent.id, ep.id)
          const [attempt] = yield* Outbox.attempts({ messageId: sent.id, endpointId: ep.id })
          expect(attempt!.status).toBe(null)
          expect(attempt!.error).not.toBe(null)
        }).pipe(
          Effect.provide(world(Retry.make({ schedule: [], timeout: "2 seconds" }), Ssrf.layerHttpClient()))
        )
        expect(server.hits.length).toBe(before)
      })
  )

  it.live("graceful shutdown: an attempt in flight finishes and is recorded; nothing new starts", () =>
    Effect.gen(function* () {
      const key = Signature.generateV1()
      const server = yield* receiver([secretText(key)], (_hit, response) => {
        setTimeout(() => response.writeHead(200).end("ok"), 300)
      })
      const store = yield* Layer.build(OutboxSqlite.layer({ filename: ":memory:", allowEndpoints: allow }))
      yield* Effect.gen(function* () {
        const ep = yield* Effect.flatMap(Endpoint.Endpoints, (e) =>
          e.create({ url: `${server.url}/hooks`, keys: [key] })
        )
        const scope = yield* Scope.make()
        yield* Layer.buildWithScope(
          Dispatcher.layer({ policy: Retry.make({ timeout: "2 seconds" }), pollInterval: "50 millis" }).pipe(
            Layer.provide(Layer.succeedContext(store)),
            Layer.provide(local)
          ),
          scope
        )
        const sent = yield* Outbox.sendEncoded({ eventType: "t", payload: "{}" })
        yield* waitFor(
          Effect.sync(() => (server.hits.length > 0 ? true : undefined)),
          "the request"
        )
        yield* Scope.close(scope, Exit.void)
        // Closed, and the answer that came 300 ms later is recorded.
        const [delivery] = yield* Outbox.deliveries({ messageId: sent.id, endpointId: ep.id })
        expect(delivery).toMatchObject({ state: "delivered", attempts: 1 })
        const later = yield* Outbox.sendEncoded({ eventType: "t", payload: "{}" })
        yield* Effect.sleep("200 millis")
        expect(server.hits.length).toBe(1)
        expect((yield* Outbox.deliveries({ messageId: later.id }))[0]!.state).toBe("pending")
      }).pipe(Effect.provideContext(store))
    })
  )
})
