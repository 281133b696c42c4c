/**
 * Properties of the server under any frames: Schema-generated valid frames and malformed ones
 * (random text, wrong envelopes, valid envelopes with mutated payloads) never crash it. A connection
 * either stays usable or is closed with a typed code; the server keeps serving new connections and
 * its counters add up. Every case runs the whole app in memory under its own TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Arbitraries from "@strata/core/Arbitraries"
import * as Property from "@strata/core/Property"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/testing/TestClock"
import * as fc from "fast-check"
import { Protocol } from "../src/index.ts"
import { chat, ClientMessage, harness, TestLayer } from "./fixtures.ts"
import { connect } from "./raw.ts"

// Valid client messages, with the ones whose work grows with a number kept small.
const message = Arbitraries.arbitraryEncoded(ClientMessage).map((m: any) =>
  m._tag === "Flood" ? { ...m, count: Math.abs(m.count) % 5 } : m._tag === "Wait" ? { ...m, ms: 1000 } : m
)
const requestId = fc.oneof(fc.integer(), fc.string({ maxLength: 70 }))
const requestName = fc.constantFrom("history", "slow", "count", "nope")
const topicKey = fc.oneof(fc.constantFrom("lobby", "secret"), fc.jsonValue())

const validFrame = fc.oneof(
  message.map((d) => ({ t: "m", d })),
  fc.record({
    t: fc.constant("q"),
    i: requestId,
    n: requestName,
    d: fc.oneof(
      Arbitraries.arbitraryEncoded(chat.definition.requests.history.request),
      fc.constant({ ms: 500 }),
      fc.constant({})
    )
  }),
  fc.record({ t: fc.constantFrom("j", "l"), n: fc.constantFrom("room", "nope"), k: topicKey }),
  fc.record({
    t: fc.constant("j"),
    n: fc.constant("room"),
    k: topicKey,
    f: fc.record({ e: fc.string(), o: fc.nat() })
  }),
  fc.record({ t: fc.constant("p"), i: requestId, n: fc.constant("room"), k: topicKey }),
  fc.constantFrom({ t: "h" }, { t: "H" })
)

// A valid frame with one field replaced by any JSON value (or removed).
const mutated = fc
  .tuple(validFrame, fc.string({ maxLength: 3 }), fc.option(fc.jsonValue(), { nil: undefined }))
  .map(([frame, key, value]) => {
    const keys = Object.keys(frame)
    const target = keys[key.length % keys.length]!
    return { ...frame, [target]: value }
  })

const invalidText = fc.oneof(
  fc.string(),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.constantFrom("", "{", "null", "[]", '{"t":1}', '{"t":"m"}', '{"t":"q","i":{},"n":"count"}', "\u0000")
)

const frames = fc.array(
  fc.oneof(
    { arbitrary: validFrame.map((f) => JSON.stringify(f)), weight: 4 },
    { arbitrary: mutated.map((f) => JSON.stringify(f)), weight: 3 },
    { arbitrary: invalidText, weight: 2 }
  ),
  { maxLength: 25 }
)

// The codes a connection may be closed with under bad input: typed ones, the size limit, and the
// application code the fixture's Kick uses.
const allowedCodes = new Set<number>([
  Protocol.CloseCode.MessageTooBig,
  Protocol.CloseCode.InvalidFrame,
  Protocol.CloseCode.InvalidMessage,
  Protocol.CloseCode.TooManyInvalidFrames,
  4100
])

describe("any frames", () => {
  it("never crash the server: connections stay usable or close with a typed code", () =>
    Property.effect(
      [frames],
      ([texts]) =>
        Effect.scoped(
          Effect.gen(function* () {
            const h = yield* harness({ maxMessageSize: 4096, maxInvalidFrames: 3 })
            const raw = yield* connect(h.WebSocket, "ws://test/ws/chat?token=1", [chat.protocol])
            for (const text of texts) {
              if (raw.closed !== undefined) break
              raw.ws.send(text)
            }
            // Let waits and request timeouts run out.
            yield* Effect.promise(() => new Promise((r) => setTimeout(r, 1)))
            yield* TestClock.adjust("1 minute")
            if (raw.closed === undefined) {
              raw.send({ t: "m", d: { _tag: "Echo", text: "still there" } })
              const echoed = yield* raw.next(
                (f) => f.t === "m" && f.d._tag === "Echoed" && f.d.text === "still there"
              )
              expect(echoed).toBeDefined()
            } else {
              expect(allowedCodes).toContain(raw.closed.code)
            }
            // Every reply is a frame of the protocol.
            for (const frame of raw.frames)
              expect(["m", "r", "e", "j", "l", "P", "x", "h", "H"]).toContain(frame.t)
            // And the server serves a new connection.
            const fresh = yield* connect(h.WebSocket, "ws://test/ws/chat?token=2", [chat.protocol])
            fresh.send({ t: "m", d: { _tag: "Whoami" } })
            expect(yield* fresh.next((f) => f.d?._tag === "You")).toEqual({
              t: "m",
              d: { _tag: "You", id: "2", name: "Bob" }
            })
            const metrics = yield* h.hub.metrics
            expect(metrics.opened).toBe(2)
            expect(metrics.connections).toBe(raw.closed === undefined ? 2 : 1)
          })
        ),
      { layer: TestLayer, numRuns: 150 }
    ))
})
