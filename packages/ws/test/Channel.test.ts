/**
 * The channel server in memory: the whole app (middleware, upgrade, channel) runs in-process with
 * the test's TestClock; a raw client sends frames as given, so the protocol itself is under test.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "fast-check"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as TestClock from "effect/testing/TestClock"
import { Channel, Hub, Protocol, PubSub } from "../src/index.ts"
import { chat, closes, counter, harness, roomId, TestLayer, UsersLive } from "./fixtures.ts"
import type * as Testing from "../src/Testing.ts"

type Harness = Effect.Success<ReturnType<typeof harness>>
type Raw = Testing.RawConnection<typeof chat>

/**
 * The next frame that matches, as plain JSON: these tests read the protocol's fields directly
 * (`frame.d.n`, `frame.ok.o`) rather than narrowing the frame union each time.
 */
const next = (raw: Raw, match?: (frame: any) => boolean): Effect.Effect<any, Testing.ConnectionClosed> =>
  raw.next(match)

const url = (token = "1") => `/ws/chat?token=${token}`

/** Connects and takes the welcome notice. */
const open = (h: Harness, token = "1") =>
  Effect.gen(function* () {
    const raw = yield* h.connect(chat, url(token))
    expect(raw.closed).toBeUndefined()
    expect(yield* next(raw)).toMatchObject({ t: "m", d: { _tag: "Notice" } })
    return raw
  })

const join = (raw: Raw, key: string, from?: { e: string; o: number }) =>
  Effect.gen(function* () {
    raw.send(from === undefined ? { t: "j", n: "room", k: key } : { t: "j", n: "room", k: key, f: from })
    return yield* next(raw, (f) => f.t === "j")
  })

const say = (raw: Raw, key: string, text: string) => raw.send({ t: "m", d: { _tag: "Say", room: key, text } })

describe("the handshake", () => {
  it.effect(
    "runs the route's middleware first: no token is a 401, a banned user a 403, never an open socket",
    () =>
      Effect.gen(function* () {
        const h = yield* harness()
        const anonymous = yield* h.connect(chat, "/ws/chat")
        expect(anonymous.closed).toEqual({ code: 1006, reason: "" })
        expect(h.sockets[0]!.refused?.status).toBe(401)
        const banned = yield* h.connect(chat, url("3"))
        expect(banned.closed?.code).toBe(1006)
        expect(h.sockets[1]!.refused?.status).toBe(403)
        expect((yield* h.hub.metrics).opened).toBe(0)
      }).pipe(Effect.provide(TestLayer))
  )

  it.effect("refuses a client built from another version of the channel with 400 and says why", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const old = yield* h.connect(chat, url(), { protocols: ["strata.0123456789abcdef"] })
      expect(old.closed?.code).toBe(1006)
      const refused = h.sockets[0]!.refused!
      expect(refused.status).toBe(400)
      const body = JSON.parse(refused.body)
      expect(body).toMatchObject({ error: "ProtocolMismatch", expected: chat.protocol })
      expect(body.message).toContain("protocol version differs")
      expect(body.message).toContain("strata.0123456789abcdef")
      const none = yield* h.connect(chat, url(), { protocols: [] })
      expect(none.closed?.code).toBe(1006)
      expect(h.sockets[1]!.refused?.status).toBe(400)
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("answers a plain GET with 426 and the protocol it speaks", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const response = yield* Effect.promise(() => h.handler(new Request("http://test/ws/chat?token=1")))
      expect(response.status).toBe(426)
      expect(response.headers.get("upgrade")).toBe("websocket")
      expect(yield* Effect.promise(() => response.json())).toMatchObject({
        error: "UpgradeRequired",
        protocol: chat.protocol
      })
    }).pipe(Effect.provide(TestLayer))
  )

  it("hashes the schemas: the same definition gives the same protocol, another schema another", () => {
    expect(chat.protocol).toMatch(/^strata\.[0-9a-f]{16}$/)
    const again = Channel.make(chat.definition)
    expect(again.protocol).toBe(chat.protocol)
    const changed = Channel.make({ ...chat.definition, server: chat.definition.client })
    expect(changed.protocol).not.toBe(chat.protocol)
  })

  it("finds the channel's subprotocol in a header as parsing the header's list does", () => {
    // Headers made of the protocol, near misses of it, commas and white space, in any order.
    const piece = fc.constantFrom(
      chat.protocol,
      "strata.",
      `${chat.protocol}x`,
      `x${chat.protocol}`,
      "a b",
      ""
    )
    const gap = fc.constantFrom("", " ", "\t", "  ", "\u00a0")
    const header = fc
      .array(fc.tuple(gap, piece, gap), { maxLength: 5 })
      .map((items) => items.map(([a, p, b]) => a + p + b).join(","))
    fc.assert(
      fc.property(fc.option(header, { nil: undefined }), (h) => {
        expect(Protocol.offersSubprotocol(h, chat.protocol)).toBe(
          Protocol.parseSubprotocols(h).includes(chat.protocol)
        )
      })
    )
    expect(Protocol.offersSubprotocol(`x, ${chat.protocol} ,y`, chat.protocol)).toBe(true)
    expect(Protocol.offersSubprotocol(`${chat.protocol} x`, chat.protocol)).toBe(false)
  })
})

describe("messages and requests", () => {
  it.effect("decodes client messages, runs handlers with the middleware's services, encodes replies", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const ada = yield* open(h)
      ada.send({ t: "m", d: { _tag: "Whoami" } })
      expect(yield* next(ada)).toEqual({ t: "m", d: { _tag: "You", id: "1", name: "Ada" } })
      const bob = yield* open(h, "2")
      bob.send({ t: "m", d: { _tag: "Whoami" } })
      expect(yield* next(bob)).toEqual({ t: "m", d: { _tag: "You", id: "2", name: "Bob" } })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("answers requests by id: a response, a typed error, or a failure with its reason", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const raw = yield* open(h)
      raw.send({ t: "q", i: 1, n: "history", d: { room: "lobby" } })
      expect(yield* next(raw)).toEqual({ t: "r", i: 1, ok: ["hello", "world"] })
      raw.send({ t: "q", i: "two", n: "history", d: { room: "nowhere" } })
      expect(yield* next(raw)).toEqual({ t: "r", i: "two", err: { _tag: "NoSuchRoom", room: "nowhere" } })
      raw.send({ t: "q", i: 3, n: "nope", d: {} })
      expect(yield* next(raw)).toMatchObject({ t: "r", i: 3, fail: { _tag: "UnknownRequest" } })
      raw.send({ t: "q", i: 4, n: "history", d: { room: 7 } })
      expect(yield* next(raw)).toMatchObject({ t: "r", i: 4, fail: { _tag: "InvalidRequest" } })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("times a request out on the TestClock and interrupts its handler", () =>
    Effect.gen(function* () {
      const h = yield* harness({ requestTimeout: "5 seconds" })
      const raw = yield* open(h)
      raw.send({ t: "q", i: 1, n: "slow", d: { ms: 60_000 } })
      raw.send({ t: "q", i: 2, n: "slow", d: { ms: 1_000 } })
      yield* TestClock.adjust("1 second")
      expect(yield* next(raw)).toEqual({ t: "r", i: 2, ok: 1000 })
      yield* TestClock.adjust("4 seconds")
      expect(yield* next(raw)).toMatchObject({ t: "r", i: 1, fail: { _tag: "Timeout" } })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("runs a request sent twice with one id once and answers it once", () =>
    Effect.gen(function* () {
      counter.value = 0
      const h = yield* harness()
      const raw = yield* open(h)
      raw.send({ t: "q", i: 7, n: "count", d: {} })
      raw.send({ t: "q", i: 7, n: "count", d: {} })
      raw.send({ t: "q", i: 8, n: "count", d: {} })
      expect(yield* next(raw)).toEqual({ t: "r", i: 7, ok: 1 })
      expect(yield* next(raw)).toEqual({ t: "r", i: 8, ok: 2 })
      raw.send({ t: "q", i: 7, n: "count", d: {} })
      raw.send({ t: "m", d: { _tag: "Echo", text: "after" } })
      expect(yield* next(raw)).toEqual({ t: "m", d: { _tag: "Echoed", text: "after" } })
      expect(counter.value).toBe(2)
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("answers Busy beyond the concurrent requests a connection may run", () =>
    Effect.gen(function* () {
      const h = yield* harness({ maxConcurrentRequests: 2 })
      const raw = yield* open(h)
      for (const i of [1, 2, 3]) raw.send({ t: "q", i, n: "slow", d: { ms: 1000 } })
      expect(yield* next(raw)).toMatchObject({ t: "r", i: 3, fail: { _tag: "Busy" } })
      yield* TestClock.adjust("1 second")
      expect((yield* next(raw)).i).toBe(1)
      expect((yield* next(raw)).i).toBe(2)
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("handles messages one at a time, in order", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const raw = yield* open(h)
      raw.send({ t: "m", d: { _tag: "Wait", ms: 1000 } })
      raw.send({ t: "m", d: { _tag: "Echo", text: "second" } })
      yield* TestClock.adjust("1 second")
      expect(yield* next(raw)).toEqual({ t: "m", d: { _tag: "Notice", text: "waited 1000" } })
      expect(yield* next(raw)).toEqual({ t: "m", d: { _tag: "Echoed", text: "second" } })
    }).pipe(Effect.provide(TestLayer))
  )
})

describe("inbound backpressure", () => {
  it.effect(
    "stops reading a connection whose messages pile up behind a slow handler, and reads on after",
    () =>
      Effect.gen(function* () {
        const h = yield* harness({ maxPendingMessages: 2 })
        const raw = yield* open(h)
        raw.send({ t: "m", d: { _tag: "Wait", ms: 1000 } })
        for (let i = 0; i < 6; i++) raw.send({ t: "m", d: { _tag: "Echo", text: String(i) } })
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
        // Paused: what the client sent waits in the socket, not in the server's memory.
        expect((h.sockets[0] as unknown as { serverPaused: boolean }).serverPaused).toBe(true)
        yield* TestClock.adjust("1 second")
        expect(yield* next(raw)).toEqual({ t: "m", d: { _tag: "Notice", text: "waited 1000" } })
        const texts = []
        for (let i = 0; i < 6; i++) texts.push((yield* next(raw)).d.text)
        expect(texts).toEqual(["0", "1", "2", "3", "4", "5"])
        expect((h.sockets[0] as unknown as { serverPaused: boolean }).serverPaused).toBe(false)
      }).pipe(Effect.provide(TestLayer))
  )
})

describe("bad frames", () => {
  it.effect("replies to invalid frames and schema failures with a typed reason and stays open", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const raw = yield* open(h)
      raw.send("{not json")
      expect(yield* next(raw)).toEqual({
        t: "x",
        reason: { _tag: "InvalidFrame", message: "the frame is not JSON" }
      })
      raw.send(JSON.stringify({ t: "?" }))
      expect(yield* next(raw)).toMatchObject({ t: "x", reason: { _tag: "InvalidFrame" } })
      raw.send({ t: "m", d: { _tag: "Unknown" } })
      expect(yield* next(raw)).toMatchObject({ t: "x", reason: { _tag: "InvalidMessage" } })
      raw.send({ t: "m", d: { _tag: "Echo", text: "still here" } })
      expect(yield* next(raw)).toEqual({ t: "m", d: { _tag: "Echoed", text: "still here" } })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("does not take the names every object inherits for requests or topics", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const raw = yield* open(h)
      raw.send({ t: "q", i: 1, n: "constructor", d: {} })
      expect(yield* next(raw)).toMatchObject({ t: "r", i: 1, fail: { _tag: "UnknownRequest" } })
      raw.send({ t: "j", n: "toString", k: "lobby" })
      expect(yield* next(raw)).toMatchObject({ t: "j", n: "toString", no: { _tag: "UnknownTopic" } })
      raw.send({ t: "p", i: 2, n: "__proto__", k: "lobby" })
      expect(yield* next(raw)).toMatchObject({ t: "r", i: 2, fail: { _tag: "InvalidRequest" } })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("closes with 4002 after more invalid frames than it tolerates", () =>
    Effect.gen(function* () {
      const h = yield* harness({ maxInvalidFrames: 2 })
      const raw = yield* open(h)
      for (let i = 0; i < 3; i++) raw.send("nope")
      const closed = yield* raw.awaitClose
      expect(closed.code).toBe(4002)
      expect(Protocol.closeReason(closed.code, closed.reason)._tag).toBe("TooManyInvalidFrames")
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("closes with 4000 or 4001 and a typed reason when the route says so", () =>
    Effect.gen(function* () {
      const h = yield* harness({ invalidFrames: "close" })
      const a = yield* open(h)
      a.send("[]")
      const first = yield* a.awaitClose
      expect(Protocol.closeReason(first.code, first.reason)).toMatchObject({
        _tag: "InvalidFrame",
        code: 4000
      })
      const b = yield* open(h)
      b.send({ t: "m", d: { _tag: "Echo", text: 1 } })
      const second = yield* b.awaitClose
      expect(Protocol.closeReason(second.code, second.reason)).toMatchObject({
        _tag: "InvalidMessage",
        code: 4001
      })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("closes with 1009 past the message size limit", () =>
    Effect.gen(function* () {
      const h = yield* harness({ maxMessageSize: 100 })
      const raw = yield* open(h)
      raw.send({ t: "m", d: { _tag: "Echo", text: "x".repeat(200) } })
      expect((yield* raw.awaitClose).code).toBe(1009)
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("logs a handler's defect and keeps the connection", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const raw = yield* open(h)
      raw.send({ t: "m", d: { _tag: "Crash" } })
      raw.send({ t: "m", d: { _tag: "Echo", text: "alive" } })
      expect(yield* next(raw)).toEqual({ t: "m", d: { _tag: "Echoed", text: "alive" } })
    }).pipe(Effect.provide(TestLayer))
  )
})

describe("topics", () => {
  it.effect("joins with the join handler's consent, fans events out to every member, and leaves", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const ada = yield* open(h)
      const bob = yield* open(h, "2")
      const joined = yield* join(ada, "lobby")
      expect(joined).toMatchObject({ t: "j", n: "room", k: "lobby", ok: { r: "fresh", o: 0 } })
      expect((yield* join(bob, "lobby")).ok.e).toBe(joined.ok.e)
      say(ada, "lobby", "hi all")
      const event = {
        t: "e",
        n: "room",
        k: "lobby",
        o: 1,
        ep: joined.ok.e,
        d: { from: "Ada", text: "hi all" }
      }
      expect(yield* next(ada)).toEqual(event)
      expect(yield* next(bob)).toEqual(event)
      bob.send({ t: "l", n: "room", k: "lobby" })
      expect(yield* next(bob)).toEqual({ t: "l", n: "room", k: "lobby" })
      say(ada, "lobby", "anyone?")
      expect((yield* next(ada)).o).toBe(2)
      bob.send({ t: "m", d: { _tag: "Echo", text: "sync" } })
      expect(yield* next(bob)).toEqual({ t: "m", d: { _tag: "Echoed", text: "sync" } })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("refuses joins the handler denies, unknown topics and invalid keys, each with its reason", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const bob = yield* open(h, "2")
      expect(yield* join(bob, "secret")).toEqual({
        t: "j",
        n: "room",
        k: "secret",
        no: { _tag: "Denied", message: "admins only" }
      })
      const ada = yield* open(h)
      expect((yield* join(ada, "secret")).ok.r).toBe("fresh")
      bob.send({ t: "j", n: "nope", k: "x" })
      expect((yield* next(bob)).no._tag).toBe("UnknownTopic")
      bob.send({ t: "j", n: "room", k: 42 })
      expect((yield* next(bob)).no._tag).toBe("InvalidKey")
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("broadcasts to every connection of the channel, except the sender when asked", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const ada = yield* open(h)
      const bob = yield* open(h, "2")
      ada.send({ t: "m", d: { _tag: "Shout", text: "fire drill" } })
      expect(yield* next(bob)).toEqual({ t: "m", d: { _tag: "Notice", text: "fire drill" } })
      ada.send({ t: "m", d: { _tag: "Echo", text: "me" } })
      expect(yield* next(ada)).toEqual({ t: "m", d: { _tag: "Echoed", text: "me" } })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("tells who is in a topic, with what each member's join handler returned", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const ada = yield* open(h)
      const bob = yield* open(h, "2")
      bob.send({ t: "p", i: 1, n: "room", k: "lobby" })
      expect(yield* next(bob)).toMatchObject({ t: "r", i: 1, fail: { _tag: "InvalidRequest" } })
      yield* join(ada, "lobby")
      yield* join(bob, "lobby")
      bob.send({ t: "p", i: 2, n: "room", k: "lobby" })
      const members = (yield* next(bob)).m.map((m: { meta: unknown }) => m.meta)
      expect(members).toEqual(expect.arrayContaining([{ name: "Ada" }, { name: "Bob" }]))
      const server = yield* Channel.presence(chat, "room", roomId("lobby"))
      expect(server.map((m) => m.meta.name).toSorted()).toEqual(["Ada", "Bob"])
      ada.socket.close()
      yield* ada.awaitClose
      yield* Effect.yieldNow
      expect((yield* Channel.presence(chat, "room", roomId("lobby"))).map((m) => m.meta.name)).toEqual([
        "Bob"
      ])
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("publishes from outside any connection", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const ada = yield* open(h)
      yield* join(ada, "lobby")
      yield* Channel.publish(chat, "room", roomId("lobby"), { from: "system", text: "maintenance" })
      expect((yield* next(ada)).d).toEqual({ from: "system", text: "maintenance" })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("resumes from a position: Recovered with the missed events, Gap when they left the history", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const ada = yield* open(h)
      const first = yield* join(ada, "lobby")
      for (const text of ["1", "2", "3"]) say(ada, "lobby", text)
      for (let i = 0; i < 3; i++) yield* next(ada, (f) => f.t === "e")
      const later = yield* open(h)
      const resumed = yield* join(later, "lobby", { e: first.ok.e, o: 1 })
      expect(resumed.ok).toEqual({ r: "recovered", e: first.ok.e, o: 3, n: 2 })
      expect((yield* next(later)).d.text).toBe("2")
      expect((yield* next(later)).d.text).toBe("3")
      // The history keeps 5 events: resuming from 1 after 8 lost 2..3.
      for (const text of ["4", "5", "6", "7", "8"]) say(ada, "lobby", text)
      for (let i = 0; i < 5; i++) yield* next(later, (f) => f.t === "e")
      const third = yield* open(h)
      expect((yield* join(third, "lobby", { e: first.ok.e, o: 1 })).ok).toEqual({
        r: "gap",
        e: first.ok.e,
        o: 8,
        missed: 2
      })
      const fourth = yield* open(h)
      expect((yield* join(fourth, "lobby", { e: "another-epoch", o: 8 })).ok).toMatchObject({
        r: "gap",
        o: 8
      })
      say(ada, "lobby", "9")
      expect((yield* next(fourth, (f) => f.t === "e")).o).toBe(9)
    }).pipe(Effect.provide(TestLayer))
  )
})

describe("outbound queues", () => {
  const flood = (policy: Hub.OverflowPolicy) =>
    Effect.gen(function* () {
      const h = yield* harness({ outbound: { limit: 3, highWaterMark: 10, policy } })
      const raw = yield* open(h)
      h.sockets[0]!.pause()
      raw.send({ t: "m", d: { _tag: "Flood", count: 10 } })
      return { h, raw, socket: h.sockets[0]! }
    })

  it.effect("dropNewest keeps the first frames and counts the dropped ones", () =>
    Effect.gen(function* () {
      const { raw, socket } = yield* flood("dropNewest")
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 10)))
      socket.resume()
      const ticks = []
      for (let i = 0; i < 4; i++) ticks.push((yield* next(raw)).d.n)
      // One frame went to the socket before it was full, then the queue took three.
      expect(ticks).toEqual([0, 1, 2, 3])
      raw.send({ t: "m", d: { _tag: "Echo", text: "next" } })
      expect((yield* next(raw)).d).toEqual({ _tag: "Echoed", text: "next" })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("dropOldest keeps the latest frames", () =>
    Effect.gen(function* () {
      const { h, raw, socket } = yield* flood("dropOldest")
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 10)))
      expect((yield* h.hub.metrics).dropped).toBe(6)
      socket.resume()
      const ticks = []
      for (let i = 0; i < 4; i++) ticks.push((yield* next(raw)).d.n)
      expect(ticks).toEqual([0, 7, 8, 9])
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("close cuts a slow consumer with 4005 SlowConsumer", () =>
    Effect.gen(function* () {
      const { h, raw, socket } = yield* flood("close")
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 10)))
      socket.resume()
      const closed = yield* raw.awaitClose
      expect(Protocol.closeReason(closed.code, closed.reason)._tag).toBe("SlowConsumer")
      expect((yield* h.hub.metrics).slowConsumerCloses).toBe(1)
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("suspend makes the sender wait until the client reads, losing nothing", () =>
    Effect.gen(function* () {
      const { raw, socket } = yield* flood("suspend")
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 10)))
      socket.resume()
      const ticks = []
      for (let i = 0; i < 10; i++) ticks.push((yield* next(raw)).d.n)
      expect(ticks).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    }).pipe(Effect.provide(TestLayer))
  )
})

describe("lifecycle", () => {
  it.effect("pings after the interval and closes with 4003 when no pong comes in time", () =>
    Effect.gen(function* () {
      const h = yield* harness({ heartbeat: { interval: "10 seconds", timeout: "5 seconds" } })
      const alive = yield* open(h)
      const vanished = yield* open(h, "2")
      h.sockets[1]!.freeze()
      yield* TestClock.adjust("10 seconds")
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
      yield* TestClock.adjust("5 seconds")
      // The vanished peer answers no close frame either: it is cut a couple of ticks later.
      yield* TestClock.adjust("2 seconds")
      expect((yield* vanished.awaitClose).code).toBe(1006)
      expect((yield* h.hub.metrics).heartbeatTimeouts).toBe(1)
      expect(alive.closed).toBeUndefined()
      alive.send({ t: "m", d: { _tag: "Echo", text: "ok" } })
      expect((yield* next(alive)).d.text).toBe("ok")
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("closes with 4004 after the idle timeout; heartbeats do not count as activity", () =>
    Effect.gen(function* () {
      const h = yield* harness({ idleTimeout: "30 seconds", heartbeat: false })
      const raw = yield* open(h)
      yield* TestClock.adjust("20 seconds")
      raw.send({ t: "h" })
      expect(yield* next(raw)).toEqual({ t: "H" })
      raw.send({ t: "m", d: { _tag: "Echo", text: "busy" } })
      yield* next(raw)
      yield* TestClock.adjust("29 seconds")
      expect(raw.closed).toBeUndefined()
      raw.send({ t: "h" })
      yield* next(raw)
      yield* TestClock.adjust("1 second")
      const closed = yield* raw.awaitClose
      expect(Protocol.closeReason(closed.code, closed.reason)).toMatchObject({
        _tag: "IdleTimeout",
        code: 4004
      })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("reports connections, frames and drops as Effect metrics once per tick", () =>
    Effect.gen(function* () {
      // The registry is the process's: counters are compared before and after.
      const count = (snapshot: ReadonlyArray<Metric.Metric.Snapshot>, name: string) =>
        (snapshot.find((m) => m.id === name)?.state as { readonly count?: number } | undefined)?.count ?? 0
      const before = yield* Metric.snapshot
      const h = yield* harness()
      const raw = yield* open(h)
      raw.send({ t: "m", d: { _tag: "Echo", text: "counted" } })
      yield* next(raw)
      yield* TestClock.adjust("1 second")
      const after = yield* Metric.snapshot
      expect(after.find((m) => m.id === "strata_ws_connections")?.state).toMatchObject({ value: 1 })
      expect(count(after, "strata_ws_frames_received") - count(before, "strata_ws_frames_received")).toBe(1)
      expect(count(after, "strata_ws_frames_sent") - count(before, "strata_ws_frames_sent")).toBe(2)
      expect((yield* h.hub.metrics).received).toBe(1)
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("lets a handler close with an application code and runs onClose with the reason", () =>
    Effect.gen(function* () {
      closes.length = 0
      const h = yield* harness()
      const raw = yield* open(h)
      raw.send({ t: "m", d: { _tag: "Kick" } })
      expect(yield* raw.awaitClose).toEqual({ code: 4100, reason: "kicked" })
      yield* Effect.yieldNow
      expect(closes.map((c) => c.reason)).toEqual([{ _tag: "Application", code: 4100, message: "kicked" }])
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect(
    "shuts down gracefully: refuses upgrades, sends 1001 in batches, cuts the rest at the deadline",
    () =>
      Effect.gen(function* () {
        const h = yield* harness()
        const clients: Array<Raw> = []
        for (let i = 0; i < 5; i++) clients.push(yield* open(h))
        h.sockets[4]!.freeze()
        const shutdown = yield* Effect.forkChild(
          h.hub.shutdown({ batchSize: 2, batchInterval: "1 second", deadline: "5 seconds" })
        )
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
        expect(clients.map((c) => c.closed?.code)).toEqual([1001, 1001, undefined, undefined, undefined])
        const late = yield* h.connect(chat, url())
        expect(late.closed?.code).toBe(1006)
        expect(h.sockets.at(-1)!.refused?.status).toBe(503)
        yield* TestClock.adjust("1 second")
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
        expect(clients.map((c) => c.closed?.code)).toEqual([1001, 1001, 1001, 1001, undefined])
        yield* TestClock.adjust("4 seconds")
        yield* Fiber.join(shutdown)
        expect((yield* clients[4]!.awaitClose).code).toBe(1006)
        expect((yield* h.hub.metrics).connections).toBe(0)
      }).pipe(Effect.provide(TestLayer))
  )

  it.effect("two hubs on one fan-out behave as two nodes: events and presence cross", () =>
    Effect.gen(function* () {
      const fanOut = Layer.succeed(PubSub.PubSub, PubSub.makeMemory())
      const node = Effect.gen(function* () {
        const context = yield* Layer.build(
          Layer.mergeAll(Hub.layerWith().pipe(Layer.provide(fanOut)), UsersLive)
        )
        return yield* harness().pipe(Effect.provideContext(context))
      })
      const one = yield* node
      const two = yield* node
      expect(one.hub.nodeId).not.toBe(two.hub.nodeId)
      const ada = yield* open(one)
      const bob = yield* open(two, "2")
      yield* join(ada, "lobby")
      yield* join(bob, "lobby")
      say(bob, "lobby", "from node two")
      expect((yield* next(ada, (f) => f.t === "e")).d).toEqual({ from: "Bob", text: "from node two" })
      bob.send({ t: "p", i: 1, n: "room", k: "lobby" })
      expect((yield* next(bob, (f) => f.t === "P")).m).toHaveLength(2)
    })
  )
})
