/**
 * Type-checked by `scripts/check-package.ts` against the installed tarballs (module nodenext,
 * strict): the published declarations carry the compile-time checks. Each rule has a case that must
 * compile and one that must not (`@ts-expect-error`, which fails the check if the line compiles).
 */
import { App, Middleware, Route, Router } from "@strata/core"
import * as Testing from "@strata/core/Testing"
import { Channel } from "@strata/ws"
import { Catalog, Receiver, Signature } from "@strata/webhooks"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as HttpServerResponse from "effect/http/HttpServerResponse"

class Greeting extends Middleware.Service<Greeting, string>()("check/Greeting") {}

const greeting = Middleware.make({
  name: "greeting",
  provides: [Greeting],
  apply: (next) => Effect.provideService(next, Greeting, "world")
})

const hello = Route.get(
  "/hello",
  Effect.map(Greeting, (name) => HttpServerResponse.text(`hello ${name}`))
)

// 1. A handler reading a request-scoped service serves behind the middleware that provides it…
const served: { readonly handler: (request: Request) => Promise<Response> } = App.toWebHandler(
  Router.make([hello]).pipe(Router.use(greeting)),
  Layer.empty
)
// @ts-expect-error …and not where no middleware provides it
App.toWebHandler(Router.make([hello]), Layer.empty)

// 2. The Testing client takes the same check.
Testing.client(Router.make([hello]).pipe(Router.use(greeting)), Layer.empty)
// @ts-expect-error no middleware provides Greeting
Testing.client(Router.make([hello]), Layer.empty)

// 3. A webhook route reads its event only behind the receiver, whose cases are the catalog's types.
const events = Catalog.make({ "user.created": Schema.Struct({ id: Schema.String }) })
class Hook extends Receiver.Event<Hook>()("check/Hook", events) {}
const receive = Route.post(
  "/hooks",
  Receiver.handle(Hook, { "user.created": (event) => Effect.log(event.data.id) })
)
// @ts-expect-error the catalog has no user.deleted
Receiver.handle(Hook, { "user.deleted": () => Effect.void })
const receiver = Receiver.middleware(Hook, { scheme: Receiver.standardWebhooks([Signature.generateV1()]) })
App.toWebHandler(Router.make([receive]).pipe(Router.use(receiver)), Receiver.layerMemory())
// @ts-expect-error the event is read, but no receiver provides it
App.toWebHandler(Router.make([receive]), Receiver.layerMemory())
// @ts-expect-error the receiver needs a replay cache in the app layer
App.toWebHandler(Router.make([receive]).pipe(Router.use(receiver)), Layer.empty)

// 4. A channel's topics take their own payloads.
const chat = Channel.make({
  client: Schema.TaggedStruct("Say", { text: Schema.String }),
  server: Schema.TaggedStruct("Said", { text: Schema.String }),
  topics: { room: { key: Schema.String, payload: Schema.Struct({ text: Schema.String }) } }
})
Channel.publish(chat, "room", "lobby", { text: "hi" })
// @ts-expect-error text is a string
Channel.publish(chat, "room", "lobby", { text: 1 })

// 5. Internal modules are not part of the package.
// @ts-expect-error the exports map closes ./internal/*
await import("@strata/core/internal/env")

export { served }
