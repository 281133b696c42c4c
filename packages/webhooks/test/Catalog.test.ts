import { describe, expect, it } from "@effect/vitest"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/testing/TestClock"
import * as fc from "fast-check"
import { Catalog } from "../src/index.ts"
import * as Property from "@strata/core/Property"

const events = Catalog.make({
  "user.created": Schema.Struct({ id: Schema.String, age: Schema.Int }),
  // A Schema whose wire form differs from its value: the sender encodes, the receiver decodes.
  "invoice.due": Schema.Struct({ id: Schema.String, due: Schema.DateTimeUtcFromString })
})

const tagOf = (effect: Effect.Effect<unknown, { readonly _tag: string }>) =>
  Effect.match(effect, { onFailure: (e) => e._tag, onSuccess: () => "Success" })

describe("Catalog", () => {
  it("encodes the Standard Webhooks envelope, with each type's Schema", () => {
    expect(Catalog.encode(events, "user.created", { id: "u", age: 3 }, { timestamp: new Date(0) })).toBe(
      '{"type":"user.created","timestamp":"1970-01-01T00:00:00.000Z","data":{"id":"u","age":3}}'
    )
    const due = DateTime.makeUnsafe("2024-05-01T00:00:00Z")
    const body = Catalog.encode(events, "invoice.due", { id: "in", due }, { timestamp: due })
    expect(JSON.parse(body)).toEqual({
      type: "invoice.due",
      timestamp: "2024-05-01T00:00:00.000Z",
      data: { id: "in", due: "2024-05-01T00:00:00.000Z" }
    })
    // A check the types cannot express (an integer) still holds when encoding.
    expect(() => Catalog.encode(events, "user.created", { id: "u", age: 1.5 })).toThrow()
  })

  it.effect("encodeEffect reads the time from the Clock and fails on a Schema check", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(86_400_000)
      const body = yield* Catalog.encodeEffect(events, "user.created", { id: "u", age: 1 })
      expect(JSON.parse(body).timestamp).toBe("1970-01-02T00:00:00.000Z")
      const error = yield* Effect.flip(Catalog.encodeEffect(events, "user.created", { id: "u", age: 0.5 }))
      expect(error._tag).toBe("SchemaError")
    })
  )

  it.effect("decode fails with UnknownEventType or InvalidPayload, never a defect", () =>
    Effect.gen(function* () {
      const envelope = (type: unknown, data: unknown, timestamp: unknown = "2024-01-01T00:00:00Z") =>
        JSON.stringify({ type, timestamp, data })
      expect(yield* tagOf(Catalog.decode(events, envelope("user.created", { id: "u", age: 1 })))).toBe(
        "Success"
      )
      expect(yield* tagOf(Catalog.decode(events, envelope("user.gone", {})))).toBe("UnknownEventType")
      expect(yield* tagOf(Catalog.decode(events, envelope("toString", {})))).toBe("UnknownEventType")
      expect(yield* tagOf(Catalog.decode(events, envelope(7, {})))).toBe("InvalidPayload")
      expect(yield* tagOf(Catalog.decode(events, envelope("user.created", { id: "u" })))).toBe(
        "InvalidPayload"
      )
      expect(
        yield* tagOf(Catalog.decode(events, envelope("user.created", { id: "u", age: 1 }, "soon")))
      ).toBe("InvalidPayload")
      expect(yield* tagOf(Catalog.decode(events, "[1]"))).toBe("InvalidPayload")
      expect(yield* tagOf(Catalog.decode(events, "{"))).toBe("InvalidPayload")
      expect(yield* tagOf(Catalog.decode(events, Uint8Array.of(0xff, 0x7b, 0x7d)))).toBe("InvalidPayload")
      const long = yield* Effect.flip(Catalog.decode(events, envelope("x".repeat(10_000), {})))
      expect(JSON.stringify(long).length).toBeLessThan(500)
    })
  )

  it("what the sender encodes, the receiver decodes to the same event", () =>
    Property.effect(
      [
        fc.string(),
        fc.integer(),
        fc.date({
          min: new Date("1970-01-01T00:00:00Z"),
          max: new Date("9999-12-31T00:00:00Z"),
          noInvalidDate: true
        })
      ],
      ([id, age, at]) =>
        Effect.gen(function* () {
          const timestamp = DateTime.fromDateUnsafe(at)
          const body = Catalog.encode(events, "user.created", { id, age }, { timestamp })
          const event = yield* Catalog.decode(events, new TextEncoder().encode(body))
          expect(event).toEqual({ type: "user.created", timestamp, data: { id, age } })
        })
    ))
})
