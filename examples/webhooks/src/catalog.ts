/**
 * The event catalog both apps share: each order event with the Schema of its data. The sender cannot
 * emit an event that is not here or a payload of the wrong shape, and the receiver gets each one
 * decoded and narrowed by its `type`.
 */
import * as Schema from "effect/Schema"
import { Catalog } from "@strata/webhooks"

/** Amounts are whole minor units (cents), never floats. */
export const Money = Schema.Struct({
  amount: Schema.Int.check(Schema.isGreaterThan(0)),
  currency: Schema.Literals(["EUR", "USD", "GBP"])
})

/** One line of an order. */
export const Item = Schema.Struct({
  sku: Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(64)),
  quantity: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1000 }))
})

/** The order events. */
export const events = Catalog.make({
  "order.created": Schema.Struct({
    orderId: Schema.String,
    customer: Schema.String,
    items: Schema.Array(Item),
    total: Money
  }),
  "order.paid": Schema.Struct({ orderId: Schema.String, total: Money }),
  "order.refunded": Schema.Struct({ orderId: Schema.String, refunded: Money, reason: Schema.String })
})

/** One decoded event of the catalog: narrowing on `type` gives its `data`. */
export type OrderEvent = Catalog.Event<Catalog.EventsOf<typeof events>>
