/**
 * Run by `scripts/check-package.ts` in a fresh project that installed the packed tarballs: plain
 * JavaScript on Node (which does not strip types under node_modules), so it loads only what the
 * packages publish. An app with a middleware, a route and a webhook receiver, served in-process.
 */
import { App, Middleware, Route, Router } from "@strata/core"
import * as Testing from "@strata/core/Testing"
import { Channel } from "@strata/ws"
import * as NodeTransport from "@strata/ws/NodeTransport"
import { Catalog, Receiver, Signature } from "@strata/webhooks"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import assert from "node:assert/strict"

// Every entry point resolves to compiled JavaScript in the installed package, and internals stay closed.
for (const specifier of ["@strata/core", "@strata/core/Testing", "@strata/ws", "@strata/webhooks"]) {
  assert.match(import.meta.resolve(specifier), /\/node_modules\/@strata\/(core|ws|webhooks)\/dist\/\w+\.js$/)
}
await assert.rejects(import("@strata/core/internal/env"), { code: "ERR_PACKAGE_PATH_NOT_EXPORTED" })

class Greeting extends Middleware.Service()("check/Greeting") {}

const greeting = Middleware.make({
  name: "greeting",
  provides: [Greeting],
  apply: (next) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      Effect.provideService(next, Greeting, request.headers["x-name"] ?? "world")
    )
})

const hello = Route.get(
  "/hello",
  Effect.map(Greeting, (name) => HttpServerResponse.text(`hello ${name}`))
)

const events = Catalog.make({ "user.created": Schema.Struct({ id: Schema.String }) })
class Hook extends Receiver.Event()("check/Hook", events) {}
const secret = Signature.generateV1()

const receive = Route.post(
  "/hooks",
  Receiver.handle(Hook, {
    "user.created": (event) => Effect.succeed(HttpServerResponse.jsonUnsafe({ created: event.data.id }))
  })
)

const app = Router.make([
  Router.group("", [hello]).pipe(Router.use(greeting)),
  Router.group("", [receive]).pipe(
    Router.use(Receiver.middleware(Hook, { scheme: Receiver.standardWebhooks([secret]) }))
  )
])

const { handler, dispose } = App.toWebHandler(app, Receiver.layerMemory())
try {
  const greeted = await handler(new Request("http://check/hello", { headers: { "x-name": "Ada" } }))
  assert.equal(greeted.status, 200)
  assert.equal(await greeted.text(), "hello Ada")

  const missing = await handler(new Request("http://check/nowhere"))
  assert.equal(missing.status, 404)
  assert.equal((await missing.json()).error, "NotFound")

  const payload = JSON.stringify({
    type: "user.created",
    timestamp: new Date().toISOString(),
    data: { id: "u1" }
  })
  const delivery = (id, keys) =>
    new Request("http://check/hooks", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...Signature.sign({ id, timestamp: Math.floor(Date.now() / 1000), payload }, keys)
      },
      body: payload
    })
  const received = await handler(delivery("msg_1", [secret]))
  assert.equal(received.status, 200)
  assert.deepEqual(await received.json(), { created: "u1" })
  const forged = await handler(delivery("msg_2", [Signature.generateV1()]))
  assert.equal(forged.status, 401)
  assert.equal((await forged.json()).error, "InvalidSignature")
} finally {
  await dispose()
}

// The Testing entry point (which loads fast-check) drives the same app.
const client = Testing.client(app, Receiver.layerMemory())
try {
  const response = await client.get("/hello")
  assert.equal(response.status, 200)
  assert.equal(response.text(), "hello world")
} finally {
  await client.dispose()
}

// @strata/ws: a channel is made from its schemas, and the Node transport loads its `ws` dependency.
const chat = Channel.make({
  client: Schema.TaggedStruct("Say", { text: Schema.String }),
  server: Schema.TaggedStruct("Said", { text: Schema.String })
})
assert.equal(typeof chat, "object")
assert.equal(typeof NodeTransport.upgrade, "function")

console.log("installed packages: app served, webhook verified, ws channel made")
