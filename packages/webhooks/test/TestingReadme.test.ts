/**
 * The example of the README's "Testing" section, verbatim, so it compiles and runs.
 */
import { expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import { App, Route, Router } from "@strata/core"
import * as Property from "@strata/core/Property"
import { Catalog, Endpoint, Outbox, Receiver, Retry, Signature } from "@strata/webhooks"
import * as Testing from "@strata/webhooks/Testing"

const events = Catalog.make({
  "user.created": Schema.Struct({ id: Schema.String, email: Schema.String }),
  "user.deleted": Schema.Struct({ id: Schema.String, hard: Schema.Boolean })
})

// Sending: the real dispatcher and SQLite store (in memory), a fake receiver answering 503 to the
// first `failures` attempts of each message, and simulated time.
it("retries until the receiver answers 2xx, signing every attempt", () =>
  Property.effect([fc.integer({ min: 0, max: 3 })], ([failures]) =>
    Testing.world(
      {
        receiver: Testing.perMessage([...Array<number>(failures).fill(503), 204]),
        policy: Retry.make({ schedule: ["1 second", "1 minute", "5 minutes"], overloadFloor: 0 })
      },
      (fake) =>
        Effect.gen(function* () {
          const endpoint = yield* (yield* Endpoint.Endpoints).create({ url: "http://hooks.test/in" })
          const sent = yield* Outbox.send(events, "user.created", { id: "u_1", email: "ada@example.com" })
          expect(yield* Testing.untilQuiet("1 hour")).toBe(true)
          expect(fake.requests({ webhookId: sent.id }).length).toBe(failures + 1)
          expect(yield* fake.unverified(endpoint.keys.map((key) => key.secret))).toEqual([])
        })
    )
  ))

// Receiving: your app, built afresh for each case, and `observe`, what it did.
const secret = Signature.secretV1("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")

class Hook extends Receiver.Event<Hook>()("app/Hook", events) {}
interface Known {
  readonly email: string
  readonly at: number
  readonly delivery: string
}
class Users extends Context.Service<
  Users,
  { readonly known: Map<string, Known>; readonly deleted: Set<string> }
>()("app/Users") {}

// Order-independent: the newest event (by its own time, then delivery id) wins, and a deletion leaves
// a tombstone that a creation arriving after it cannot pass.
const newer = (a: Known, b: Known | undefined) =>
  b === undefined || a.at > b.at || (a.at === b.at && a.delivery > b.delivery)

const app = Router.group("", [
  Route.post(
    "/hooks",
    Receiver.handle(Hook, {
      "user.created": (event) =>
        Effect.gen(function* () {
          const users = yield* Users
          const delivery = yield* Receiver.Delivery
          const known = {
            email: event.data.email,
            at: DateTime.toEpochMillis(event.timestamp),
            delivery: delivery.id
          }
          if (!users.deleted.has(event.data.id) && newer(known, users.known.get(event.data.id)))
            users.known.set(event.data.id, known)
        }),
      "user.deleted": (event) =>
        Effect.gen(function* () {
          const users = yield* Users
          users.deleted.add(event.data.id)
          users.known.delete(event.data.id)
        })
    })
  )
]).pipe(
  Router.use(
    Receiver.middleware(Hook, { scheme: Receiver.standardWebhooks([secret]), onDuplicate: "acknowledge" })
  )
)

const laws = Testing.laws({
  catalog: events,
  secrets: [secret],
  url: "http://app.test/hooks",
  receiver: () => {
    const users = { known: new Map<string, Known>(), deleted: new Set<string>() }
    const { handler, dispose } = App.toWebHandler(
      app,
      Layer.merge(Receiver.layerMemory(), Layer.succeed(Users, users))
    )
    const emails = () => [...users.known].map(([id, known]) => [id, known.email]).toSorted()
    return { handler, dispose, observe: () => ({ emails: emails(), deleted: [...users.deleted].toSorted() }) }
  }
})

it("the receiver is idempotent, order-independent and verifies signatures", () => laws.all())
