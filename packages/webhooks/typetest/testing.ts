/**
 * Type tests of the testing kit (must compile / must not compile): the laws' events are the
 * catalog's types with their data, each scheme signs with its kind of secret, scripts are answers,
 * and a world's body may only read what the world provides.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import { Catalog, Outbox, Signature } from "../src/index.ts"
import * as Testing from "../src/Testing.ts"

const events = Catalog.make({
  "order.paid": Schema.Struct({ id: Schema.String, amount: Schema.Number }),
  "order.refunded": Schema.Struct({ id: Schema.String })
})

const base = {
  catalog: events,
  secrets: [Signature.generateV1()],
  receiver: () => ({ handler: async () => new Response(null, { status: 204 }), observe: () => 0 })
}

// Events of the catalog, with their data, are what the laws deliver…
Testing.laws({
  ...base,
  events: fc.constant({ type: "order.paid" as const, data: { id: "o_1", amount: 1 } })
})
// …and `orderedBy` reads a field every type has.
Testing.laws({ ...base, orderedBy: (event) => event.data.id })
// @ts-expect-error an unknown type is not an event of the catalog
Testing.laws({ ...base, events: fc.constant({ type: "order.shipped" as const, data: { id: "o_1" } }) })
// @ts-expect-error nor is the data of another type
Testing.laws({ ...base, events: fc.constant({ type: "order.paid" as const, data: { id: "o_1" } }) })
// @ts-expect-error a field only one type has is read after narrowing on `type`
Testing.laws({ ...base, orderedBy: (event) => String(event.data.amount) })

// Stripe and GitHub sign with their plain secrets, Standard Webhooks (the default) with its keys…
const plain = [Redacted.make("whsec_stripe")]
Testing.laws({ ...base, scheme: "Stripe", secrets: plain })
Testing.laws({ ...base, scheme: "GitHub", secrets: plain, concurrentDuplicates: false })
Testing.laws({ ...base, scheme: "StandardWebhooks" })
// @ts-expect-error …not with each other's
Testing.laws({ ...base, scheme: "Stripe" })
// @ts-expect-error a Standard Webhooks key is not a plain secret
Testing.laws({ ...base, secrets: plain })
// @ts-expect-error nor is there a scheme the laws do not sign
Testing.laws({ ...base, scheme: "Slack", secrets: plain })

// Scripts are statuses, responses, hang-ups or functions of the request…
Testing.receiver(Testing.answers([503, { status: 503, retryAfter: 30 }, "refuse", "hang", "reset", 200]))
Testing.receiver((request) => (request.attempt === 0 ? 500 : { status: 200, delay: "1 second" }))
// @ts-expect-error …not anything else
Testing.receiver(Testing.answers(["timeout"]))
// @ts-expect-error a response needs a status
Testing.receiver({ delay: 100 })

// A world's body reads the store, the endpoints, the dispatcher and the fake…
const ok: Effect.Effect<void, Testing.SetupError | Schema.SchemaError> = Testing.world({}, () =>
  Effect.asVoid(Outbox.send(events, "order.refunded", { id: "o_1" }))
)
void ok
class Other extends Context.Service<Other, { readonly n: number }>()("typetest/Other") {}
// @ts-expect-error …not a service the world does not provide
Testing.world({}, () => Effect.service(Other))
