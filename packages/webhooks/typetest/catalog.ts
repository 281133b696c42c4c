/**
 * Type tests of the event catalog and the receiver (must compile / must not compile): the catalog
 * shared by sender and receiver fixes the event types and each type's data on both sides.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, Route, Router } from "@strata/core"
import { Catalog, Receiver, Signature } from "../src/index.ts"

const events = Catalog.make({
  "user.created": Schema.Struct({ id: Schema.String, email: Schema.String }),
  "user.deleted": Schema.Struct({ id: Schema.String, hard: Schema.Boolean })
})

// --- Sending -----------------------------------------------------------------------------------

// A catalog type with its data encodes…
Catalog.encode(events, "user.created", { id: "u_1", email: "ada@example.com" })
Catalog.encode(events, "user.deleted", { id: "u_1", hard: true }, { timestamp: new Date(0) })
// @ts-expect-error …an unknown type does not
Catalog.encode(events, "user.renamed", { id: "u_1" })
// @ts-expect-error …nor data of another type (user.deleted has no email)
Catalog.encode(events, "user.deleted", { id: "u_1", email: "ada@example.com" })
// @ts-expect-error …nor data missing a field
Catalog.encode(events, "user.created", { id: "u_1" })
// @ts-expect-error …nor a field of the wrong type
Catalog.encode(events, "user.deleted", { id: "u_1", hard: "yes" })

// A specific catalog is a catalog, for code that takes any.
const _any: Catalog.Any = events

// --- Decoding ----------------------------------------------------------------------------------

// Decoding gives the union; narrowing on `type` gives that type's data.
Effect.map(Catalog.decode(events, "{}"), (event) => {
  const _type: "user.created" | "user.deleted" = event.type
  if (event.type === "user.created") {
    const _email: string = event.data.email
  } else {
    const _hard: boolean = event.data.hard
    // @ts-expect-error a deleted user's data has no email
    const _noEmail = event.data.email
  }
  // @ts-expect-error before narrowing, only the fields every type shares are there
  const _notYet = event.data.email
})

// --- Receiving ---------------------------------------------------------------------------------

class Hook extends Receiver.Event<Hook>()("typetest/Hook", events) {}
const verify = Receiver.middleware(Hook, { scheme: Receiver.standardWebhooks([Signature.generateV1()]) })

// A handler reading the event gets the union, narrowed by `type`.
const receive = Route.post(
  "/hooks",
  Effect.gen(function* () {
    const event = yield* Hook
    switch (event.type) {
      case "user.created": {
        const _email: string = event.data.email
        break
      }
      case "user.deleted": {
        const _hard: boolean = event.data.hard
        // @ts-expect-error narrowed to user.deleted: no email
        const _noEmail = event.data.email
        break
      }
      // @ts-expect-error a type outside the catalog is not a case of the union
      case "user.renamed":
        break
    }
    return HttpServerResponse.empty({ status: 204 })
  })
)

// Served behind the receiver, with its replay cache…
App.toWebHandler(Router.make([receive]).pipe(Router.use(verify)), Receiver.layerMemory())
// @ts-expect-error …and not without the receiver: Hook is read but nothing provides it
App.toWebHandler(Router.make([receive]), Receiver.layerMemory())

// `handle`: one case per catalog type, each given its own event.
const handled = Route.post(
  "/hooks",
  Receiver.handle(Hook, {
    "user.created": (event) => Effect.sync(() => event.data.email.toUpperCase()).pipe(Effect.asVoid),
    "user.deleted": (event) =>
      Effect.succeed(HttpServerResponse.jsonUnsafe({ gone: event.data.id, hard: event.data.hard }))
  })
)
App.toWebHandler(Router.make([handled]).pipe(Router.use(verify)), Receiver.layerMemory())

// Handling only some types compiles (the others are acknowledged with 204).
Receiver.handle(Hook, { "user.deleted": (event) => Effect.log(event.data.hard) })

// A case for a type outside the catalog does not compile.
Receiver.handle(Hook, {
  "user.created": () => Effect.void,
  // @ts-expect-error user.renamed is not in the catalog
  "user.renamed": () => Effect.void
})

Receiver.handle(Hook, {
  // @ts-expect-error the user.deleted case gets a deleted user: no email
  "user.deleted": (event) => Effect.log(event.data.email)
})
