/**
 * The testing kit tested: its valid frames parse and decode with the channel's own Schemas and the
 * server takes them; its invalid frames are each refused the way the protocol says (a typed `x`,
 * a failed answer, a refused join, or a close with the right code); the slow consumer makes each
 * overflow policy act, whatever its script; and the README's example runs.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Property from "@strata/core/Property"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/testing/TestClock"
import * as fc from "fast-check"
import { Hub, Protocol } from "../src/index.ts"
import * as Testing from "../src/Testing.ts"
import {
  chat,
  ClientMessage,
  frameOptions,
  harness,
  makeApp,
  roomId,
  ServerMessage,
  TestLayer,
  UsersLive
} from "./fixtures.ts"

const app = makeApp()

const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1)))

// The channel's Schemas, read from its definition (not through the kit or the channel's codecs).
const decodes = (schema: Schema.Codec<any, any>, value: unknown): boolean =>
  Exit.isSuccess(Schema.decodeUnknownExit(Schema.toCodecJson(schema))(value))
const definition = chat.definition

const byteLength = (text: string) => new TextEncoder().encode(text).length

describe("validFrames", () => {
  it("generates every kind of frame, each parsing and decoding with the channel's Schemas", () => {
    const seen = new Set<string>()
    Property.sync(
      [Testing.validFrames(chat)],
      ([frame]) => {
        const parsed = Protocol.parseClientFrame(JSON.stringify(frame))
        expect(typeof parsed).toBe("object")
        expect(parsed).toEqual(JSON.parse(JSON.stringify(frame)))
        const f = parsed as Protocol.ClientFrame
        seen.add(f.t === "q" ? `q:${f.n}` : f.t)
        switch (f.t) {
          case "m":
            expect(decodes(ClientMessage, f.d)).toBe(true)
            break
          case "q": {
            const request = definition.requests[f.n as keyof typeof definition.requests]
            expect(request).toBeDefined()
            expect(decodes(request.request, f.d)).toBe(true)
            break
          }
          case "j":
          case "l":
          case "p":
            expect(f.n).toBe("room")
            expect(decodes(definition.topics.room.key, f.k)).toBe(true)
            break
        }
        expect(Testing.refusal(chat, frame)).toBeUndefined()
      },
      { numRuns: 500 }
    )
    expect([...seen].toSorted()).toEqual(["H", "h", "j", "l", "m", "p", "q:count", "q:history", "q:slow"])
  })

  it("takes overrides and kinds: clamped messages, known keys, only the kinds asked for", () =>
    Property.sync(
      [
        Testing.validFrames(chat, {
          kinds: ["message", "join"],
          message: (derived) => derived.filter((m) => m._tag === "Flood").map((m) => ({ ...m, count: 3 })),
          keys: { room: fc.constant(roomId("lobby")) }
        })
      ],
      ([frame]) => {
        if (frame.t === "m") expect(frame.d).toEqual({ _tag: "Flood", count: 3 })
        else expect(frame).toMatchObject({ t: "j", n: "room", k: "lobby" })
      }
    ))

  it("is taken by the server: no frame of it is refused as invalid", () =>
    Property.effect(
      [
        fc.array(
          Testing.validFrames(chat, {
            ...frameOptions,
            kinds: ["message", "request", "join", "leave", "heartbeat"]
          }),
          { maxLength: 20 }
        )
      ],
      ([frames]) =>
        Effect.scoped(
          Effect.gen(function* () {
            const h = yield* harness()
            const raw = yield* h.connect(chat, "/ws/chat?token=1")
            for (const frame of frames) raw.send(frame)
            yield* settle
            yield* TestClock.adjust("1 minute")
            yield* settle
            for (const frame of raw.frames) {
              if (typeof frame === "string") throw new Error(`not a frame: ${frame}`)
              expect(frame.t).not.toBe("x")
              if (frame.t === "r" && "fail" in frame) expect(["Timeout", "Busy"]).toContain(frame.fail._tag)
              if (frame.t === "j" && "no" in frame) expect(frame.no._tag).toBe("Denied")
            }
            // Only the fixture's Kick closes it, with its own code.
            if (raw.closed !== undefined) expect(raw.closed.code).toBe(4100)
          })
        ),
      { layer: TestLayer, numRuns: 100 }
    ))
})

type Expected =
  | { readonly close: number }
  | { readonly frame: (frame: Protocol.ServerFrame) => boolean; readonly what: string }

/** How the protocol says the server answers an invalid frame, worked out from the text alone. */
const expectedRefusal = (text: string, policy: "reply" | "close"): Expected => {
  if (byteLength(text) > 4096) return { close: Protocol.CloseCode.MessageTooBig }
  const parsed = Protocol.parseClientFrame(text)
  const invalid = (tag: "InvalidFrame" | "InvalidMessage"): Expected =>
    policy === "close"
      ? { close: Protocol.CloseCode[tag] }
      : { frame: (f) => f.t === "x" && f.reason._tag === tag, what: `x ${tag}` }
  const failed = (i: Protocol.RequestId, tag: Protocol.RequestFailureTag): Expected => ({
    frame: (f) => f.t === "r" && "fail" in f && f.i === i && f.fail._tag === tag,
    what: `r ${JSON.stringify(i)} ${tag}`
  })
  const refused = (tag: Protocol.JoinRefusalTag): Expected => ({
    frame: (f) => f.t === "j" && "no" in f && f.no._tag === tag,
    what: `j no ${tag}`
  })
  if (typeof parsed === "string") return invalid("InvalidFrame")
  switch (parsed.t) {
    case "m":
      return invalid("InvalidMessage")
    case "q":
      return failed(
        parsed.i,
        Object.hasOwn(definition.requests, parsed.n) ? "InvalidRequest" : "UnknownRequest"
      )
    case "j":
      return refused(parsed.n === "room" ? "InvalidKey" : "UnknownTopic")
    case "p":
      return failed(parsed.i, "InvalidRequest")
    default:
      throw new Error(`the kit generated a frame the server takes: ${text}`)
  }
}

describe("invalidFrames", () => {
  it("are each refused as the protocol says, under either policy for invalid frames", () =>
    Property.effect(
      [Testing.invalidFrames(chat, frameOptions), fc.constantFrom("reply" as const, "close" as const)],
      ([text, policy]) =>
        Effect.scoped(
          Effect.gen(function* () {
            const h = yield* harness({ invalidFrames: policy, maxMessageSize: 4096 })
            const raw = yield* h.connect(chat, "/ws/chat?token=1")
            expect(Testing.refusal(chat, text)).toBeDefined()
            const expected = expectedRefusal(text, policy)
            raw.send(text)
            if ("close" in expected) {
              expect((yield* raw.awaitClose).code).toBe(expected.close)
            } else {
              const refusal = yield* Effect.orDie(raw.next(expected.frame))
              expect(refusal).toBeDefined()
              yield* settle
              expect(raw.closed).toBeUndefined()
            }
          })
        ),
      { layer: TestLayer, numRuns: 300 }
    ))

  it("include every shape: mutated frames, unknown names, wrong envelopes, non-JSON, oversize", () => {
    const sample = fc.sample(Testing.invalidFrames(chat, frameOptions), { numRuns: 400, seed: 42 })
    const kinds = new Set(
      sample.map((text) => {
        if (byteLength(text) > 4096) return "oversize"
        const parsed = Protocol.parseClientFrame(text)
        return typeof parsed === "string" ? parsed : parsed.t
      })
    )
    expect(kinds).toContain("oversize")
    expect(kinds).toContain("the frame is not JSON")
    expect(kinds).toContain("the frame is not a JSON object")
    expect(kinds).toContain("unknown frame kind t")
    for (const t of ["m", "q", "j", "p"]) expect(kinds).toContain(t)
    expect(kinds).not.toContain("l")
  })
})

describe("serverFrames", () => {
  it("are frames of the protocol whose payloads decode with the channel's Schemas", () =>
    Property.sync([Testing.serverFrames(chat)], ([frame]) => {
      const parsed = Protocol.parseServerFrame(JSON.stringify(frame))
      expect(parsed?.t).toBe(frame.t)
      if (frame.t === "m") expect(decodes(ServerMessage, frame.d)).toBe(true)
      if (frame.t === "e") expect(decodes(definition.topics.room.payload, frame.d)).toBe(true)
      if (frame.t === "j" || frame.t === "l") expect(decodes(definition.topics.room.key, frame.k)).toBe(true)
    }))
})

/** Moves the clock until the fiber is done (the consumer's pauses run on it). */
const drive = <A>(fiber: Fiber.Fiber<A>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200 && fiber.pollUnsafe() === undefined; i++) {
      yield* settle
      yield* TestClock.adjust("250 millis")
    }
    return yield* Fiber.join(fiber)
  })

const script: fc.Arbitrary<ReadonlyArray<Testing.ReadStep>> = fc
  .array(
    fc.oneof(
      fc.integer({ min: 1, max: 4 }).map((read): Testing.ReadStep => ({ read })),
      fc.integer({ min: 100, max: 3000 }).map((pauseFor): Testing.ReadStep => ({ pauseFor })),
      fc.integer({ min: 1, max: 3 }).map((times): Testing.ReadStep => ({ readEvery: "500 millis", times }))
    ),
    { maxLength: 4 }
  )
  .map((steps) => [...steps, { read: "all" }])

describe("slowConsumer", () => {
  it("makes the overflow policy act, whatever the script: drops, a close with 4005, or a wait", () =>
    Property.effect(
      [
        fc.constantFrom<Hub.OverflowPolicy>("dropNewest", "dropOldest", "close", "suspend"),
        fc.integer({ min: 5, max: 40 }),
        script
      ],
      ([policy, count, steps]) =>
        Effect.scoped(
          Effect.gen(function* () {
            const h = yield* harness({ outbound: { limit: 3, highWaterMark: 10, policy }, heartbeat: false })
            const raw = yield* h.connect(chat, "/ws/chat?token=1")
            yield* raw.nextMessage((m) => m._tag === "Notice")
            const consumer = yield* Testing.slowConsumer(raw.socket, steps)
            raw.sendMessage({ _tag: "Flood", count })
            const report = yield* drive(consumer)
            if (policy === "suspend")
              yield* Effect.orDie(raw.nextMessage((m) => m._tag === "Tick" && m.n === count - 1))
            yield* settle
            const ticks = raw.frames.flatMap((f) =>
              typeof f === "object" && f.t === "m" && (f.d as { _tag: string })._tag === "Tick"
                ? [(f.d as { n: number }).n]
                : []
            )
            const metrics = yield* h.hub.metrics
            // One frame goes to the socket before it is full, the queue takes three; the rest is
            // up to the policy.
            switch (policy) {
              case "dropNewest":
                expect(ticks).toEqual([0, 1, 2, 3])
                expect(metrics.dropped).toBe(count - 4)
                expect(report).toEqual({ read: 4, closed: false })
                break
              case "dropOldest":
                expect(ticks).toEqual([0, count - 3, count - 2, count - 1])
                expect(metrics.dropped).toBe(count - 4)
                expect(report).toEqual({ read: 4, closed: false })
                break
              case "close":
                expect(raw.closed?.code).toBe(Protocol.CloseCode.SlowConsumer)
                expect(metrics.slowConsumerCloses).toBe(1)
                expect(report.closed).toBe(true)
                break
              case "suspend":
                expect(ticks).toEqual(Array.from({ length: count }, (_, n) => n))
                expect(metrics.dropped).toBe(0)
                break
            }
          })
        ),
      { layer: TestLayer, numRuns: 80 }
    ))

  it.effect("reads by the script on the Effect clock: nothing during a pause, one frame per interval", () =>
    Effect.gen(function* () {
      const h = yield* harness({ heartbeat: false })
      const raw = yield* h.connect(chat, "/ws/chat?token=1")
      yield* raw.nextMessage((m) => m._tag === "Notice")
      const consumer = yield* Testing.slowConsumer(raw.socket, [
        { read: 2 },
        { pauseFor: "5 seconds" },
        { readEvery: "1 second", times: 3 }
      ])
      raw.sendMessage({ _tag: "Flood", count: 10 })
      const ticks = () =>
        raw.frames.filter(
          (f) => typeof f === "object" && f.t === "m" && (f.d as { _tag: string })._tag === "Tick"
        ).length
      yield* settle
      yield* settle
      expect(ticks()).toBe(2)
      yield* TestClock.adjust("4 seconds")
      yield* settle
      expect(ticks()).toBe(2)
      yield* TestClock.adjust("2 seconds")
      yield* settle
      expect(ticks()).toBe(3)
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(ticks()).toBe(4)
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(consumer)).toEqual({ read: 5, closed: false })
      // Then it reads normally again.
      yield* settle
      expect(ticks()).toBe(10)
    }).pipe(Effect.provide(TestLayer))
  )
})

describe("server", () => {
  it.effect("hands out typed clients and raw connections of one app, under the test's clock", () =>
    Effect.gen(function* () {
      const h = yield* harness({ idleTimeout: "30 seconds", heartbeat: false })
      const client = yield* h.client(chat, "/ws/chat?token=2")
      yield* client.awaitOpen
      expect(yield* client.request("history", { room: roomId("lobby") })).toEqual(["hello", "world"])
      const raw = yield* h.connect(chat, "/ws/chat?token=1")
      raw.sendMessage({ _tag: "Whoami" })
      expect(yield* raw.nextMessage((m) => m._tag === "You")).toEqual({ _tag: "You", id: "1", name: "Ada" })
      expect(h.sockets).toHaveLength(2)
      yield* TestClock.adjust("31 seconds")
      expect((yield* raw.awaitClose).code).toBe(Protocol.CloseCode.IdleTimeout)
      const refused = yield* h.connect(chat, "/ws/chat?token=3")
      expect(refused.closed?.code).toBe(1006)
      expect(refused.socket.refused?.status).toBe(403)
      const old = yield* h.connect(chat, "/ws/chat?token=1", { protocols: ["strata.0123456789abcdef"] })
      expect(old.socket.refused?.status).toBe(400)
    }).pipe(Effect.provide(TestLayer))
  )

  it("neverCrashes fails, with the frames that did it, when a close is not allowed", async () => {
    const failure = await Testing.neverCrashes(makeApp({ invalidFrames: "close" }), TestLayer, {
      channel: chat,
      url: "/ws/chat?token=1",
      allowClose: (code) => code !== Protocol.CloseCode.InvalidFrame,
      frames: fc.array(fc.constantFrom<Protocol.ClientFrame | string>({ t: "h" }, "not json"), {
        minLength: 1
      }),
      seed: 1
    }).then(
      () => undefined,
      (error: unknown) => error
    )
    expect(String(failure)).toContain("the connection closed with 4000")
    expect(String(failure)).toContain('"not json"')
  })
})

// The example of the README's "Testing" section, as written there (kept in step by hand).
describe("the README's example", () => {
  const ChatServices = Layer.mergeAll(Hub.layer(), UsersLive)

  it.effect("a typed client and a raw connection of one app, under the test's clock", () =>
    Effect.gen(function* () {
      const server = yield* Testing.server(app)
      const client = yield* server.client(chat, "/ws/chat?token=1")
      yield* client.awaitOpen
      expect(yield* client.request("history", { room: roomId("lobby") })).toEqual(["hello", "world"])

      const raw = yield* server.connect(chat, "/ws/chat?token=2")
      raw.send({ t: "q", i: 1, n: "nope", d: {} })
      expect(yield* raw.next((f) => f.t === "r")).toMatchObject({ i: 1, fail: { _tag: "UnknownRequest" } })
    }).pipe(Effect.provide(ChatServices))
  )

  it("no frames crash the server", () =>
    Testing.neverCrashes(app, ChatServices, {
      channel: chat,
      url: "/ws/chat?token=1",
      // Flood's count is how many frames the server sends back: keep it out.
      frames: fc.array(
        Testing.frames(chat, { message: (derived) => derived.filter((m) => m._tag !== "Flood") }),
        {
          maxLength: 20
        }
      ),
      numRuns: 50
    }))

  it.effect("dropOldest keeps the newest frames for a slow reader", () =>
    Effect.gen(function* () {
      const server = yield* Testing.server(
        makeApp({ outbound: { limit: 3, highWaterMark: 10, policy: "dropOldest" } })
      )
      const raw = yield* server.connect(chat, "/ws/chat?token=1")
      yield* raw.nextMessage((m) => m._tag === "Notice")
      const reader = yield* Testing.slowConsumer(raw.socket, [{ pauseFor: "5 seconds" }, { read: "all" }])
      raw.sendMessage({ _tag: "Flood", count: 20 })
      yield* TestClock.adjust("5 seconds")
      expect(yield* Fiber.join(reader)).toEqual({ read: 4, closed: false })
      expect((yield* server.hub.metrics).dropped).toBe(16)
    }).pipe(Effect.provide(ChatServices))
  )
})
