/**
 * The typed client against the in-memory app: messages, requests and topics, then what it does when
 * the connection goes — backoff with jitter on the TestClock, re-joining from the last offset
 * (Recovered or Gap), requests lost or queued, and a refusal it learns the reason of.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/testing/TestClock"
import { Channel, Client } from "../src/index.ts"
import { chat, harness, roomId, TestLayer } from "./fixtures.ts"

type Harness = Effect.Success<ReturnType<typeof harness>>

const clientOf = (h: Harness, token = "1", options: Partial<Client.Options> = {}) =>
  Client.make(chat, {
    url: `ws://test/ws/chat?token=${token}`,
    WebSocket: h.WebSocket,
    fetch: h.fetch,
    ...options
  })

/** Lets microtasks (the in-memory sockets) and forked fibers run. */
const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5)))

/** Collects a stream's elements into an array as they come. */
const collect = <A, E>(stream: Stream.Stream<A, E>) =>
  Effect.gen(function* () {
    const seen: Array<A> = []
    yield* Effect.forkScoped(Stream.runForEach(stream, (a) => Effect.sync(() => void seen.push(a))))
    yield* settle
    return seen
  })

const lobby = roomId("lobby")

describe("Client", () => {
  it.effect("sends typed messages, receives typed messages, and gets typed answers and errors", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const client = yield* clientOf(h)
      const messages = yield* collect(client.messages)
      yield* client.awaitOpen
      yield* client.send({ _tag: "Whoami" })
      yield* client.send({ _tag: "Echo", text: "typed" })
      yield* settle
      expect(messages).toEqual([
        { _tag: "Notice", text: "welcome Ada" },
        { _tag: "You", id: "1", name: "Ada" },
        { _tag: "Echoed", text: "typed" }
      ])
      expect(yield* client.request("history", { room: lobby })).toEqual(["hello", "world"])
      const error = yield* Effect.flip(client.request("history", { room: roomId("nowhere") }))
      expect(error).toEqual({ _tag: "NoSuchRoom", room: "nowhere" })
      const timeout = yield* Effect.forkChild(
        Effect.flip(client.request("slow", { ms: 60_000 }, { timeout: "1 second" }))
      )
      yield* settle
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(timeout)).toMatchObject({ _tag: "RequestError", reason: "Timeout" })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("subscribes to a topic as a stream, sees who is in it, and leaves when the stream ends", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const ada = yield* clientOf(h)
      const bob = yield* clientOf(h, "2")
      const adaSees = yield* collect(ada.subscribe("room", lobby))
      const fiber = yield* Effect.forkScoped(Stream.runCollect(Stream.take(bob.subscribe("room", lobby), 3)))
      yield* settle
      yield* ada.send({ _tag: "Say", room: lobby, text: "one" })
      yield* ada.send({ _tag: "Say", room: lobby, text: "two" })
      const bobSaw = yield* Fiber.join(fiber)
      expect(Array.from(bobSaw).map((d) => (d._tag === "Message" ? d.payload.text : d._tag))).toEqual([
        "Joined",
        "one",
        "two"
      ])
      yield* settle
      expect(adaSees.map((d) => (d._tag === "Message" ? [d.offset, d.payload] : d._tag))).toEqual([
        "Joined",
        [1, { from: "Ada", text: "one" }],
        [2, { from: "Ada", text: "two" }]
      ])
      // Bob's stream ended: he left, so only Ada is in the room.
      const members = yield* ada.presence("room", lobby)
      expect(members.map((m) => m.meta)).toEqual([{ name: "Ada" }])
      const denied = yield* Effect.flip(Stream.runDrain(bob.subscribe("room", roomId("secret"))))
      expect(denied).toMatchObject({ _tag: "JoinError", reason: "Denied", message: "admins only" })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("receives the events of topics the server joined it to, typed by topic", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const ada = yield* clientOf(h)
      const events = yield* collect(ada.events)
      yield* ada.awaitOpen
      yield* ada.send({ _tag: "Follow", room: roomId("news") })
      yield* settle
      yield* Channel.publish(chat, "room", roomId("news"), { from: "desk", text: "extra" })
      yield* settle
      expect(events).toEqual([{ topic: "room", key: "news", payload: { from: "desk", text: "extra" } }])
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect(
    "reconnects with backoff and resumes its topics: the missed events come back after Recovered",
    () =>
      Effect.gen(function* () {
        const h = yield* harness()
        const ada = yield* clientOf(h, "1", { reconnect: { initialDelay: "1 second", jitter: 0 } })
        const statuses = yield* collect(ada.status)
        const deliveries = yield* collect(ada.subscribe("room", lobby))
        const bob = yield* h.connect(chat, "/ws/chat?token=2")
        bob.send({ t: "j", n: "room", k: "lobby" })
        yield* settle
        bob.sendMessage({ _tag: "Say", room: lobby, text: "before" })
        yield* settle
        h.sockets[0]!.drop()
        yield* settle
        bob.sendMessage({ _tag: "Say", room: lobby, text: "while away 1" })
        bob.sendMessage({ _tag: "Say", room: lobby, text: "while away 2" })
        yield* settle
        expect(statuses.at(-1)).toMatchObject({
          _tag: "Reconnecting",
          attempt: 1,
          delay: 1000,
          reason: { code: 1006 }
        })
        yield* TestClock.adjust("1 second")
        yield* settle
        expect(statuses.map((s) => s._tag)).toEqual([
          "Connecting",
          "Open",
          "Reconnecting",
          "Connecting",
          "Open"
        ])
        expect(
          deliveries.map((d) => (d._tag === "Message" ? d.payload.text : d._tag === "Joined" ? "Joined" : d))
        ).toEqual(["Joined", "before", { _tag: "Recovered", replayed: 2 }, "while away 1", "while away 2"])
        bob.sendMessage({ _tag: "Say", room: lobby, text: "live again" })
        yield* settle
        expect(deliveries.at(-1)).toMatchObject({
          _tag: "Message",
          offset: 4,
          payload: { text: "live again" }
        })
      }).pipe(Effect.provide(TestLayer))
  )

  it.effect("reports a Gap when more events were missed than the topic's history keeps", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const ada = yield* clientOf(h, "1", { reconnect: { initialDelay: "1 second", jitter: 0 } })
      const deliveries = yield* collect(ada.subscribe("room", lobby))
      yield* ada.send({ _tag: "Say", room: lobby, text: "0" })
      yield* settle
      h.sockets[0]!.drop()
      const bob = yield* h.connect(chat, "/ws/chat?token=2")
      for (let i = 1; i <= 8; i++) bob.sendMessage({ _tag: "Say", room: lobby, text: String(i) })
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(
        deliveries.map((d) => (d._tag === "Message" ? d.payload.text : d._tag === "Joined" ? "Joined" : d))
      ).toEqual(["Joined", "0", { _tag: "Gap", missed: 3 }])
      bob.sendMessage({ _tag: "Say", room: lobby, text: "9" })
      yield* settle
      expect(deliveries.at(-1)).toMatchObject({ _tag: "Message", offset: 10 })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("fails requests lost with the connection, and sends those made while away once back", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const ada = yield* clientOf(h, "1", { reconnect: { initialDelay: "1 second", jitter: 0 } })
      yield* ada.awaitOpen
      const lost = yield* Effect.forkChild(Effect.flip(ada.request("slow", { ms: 10_000 })))
      yield* settle
      h.sockets[0]!.drop()
      expect(yield* Fiber.join(lost)).toMatchObject({ _tag: "RequestError", reason: "Disconnected" })
      const queued = yield* Effect.forkChild(ada.request("history", { room: lobby }))
      yield* ada.send({ _tag: "Echo", text: "queued" })
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(yield* Fiber.join(queued)).toEqual(["hello", "world"])
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("backs off exponentially with jitter while the server refuses", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const ada = yield* clientOf(h, "1", {
        reconnect: { initialDelay: "1 second", maxDelay: "8 seconds", jitter: 0.5 }
      })
      const statuses = yield* collect(ada.status)
      yield* ada.awaitOpen
      // A shutting-down server answers 503: not a reason to stop trying.
      yield* Effect.forkChild(h.hub.shutdown({ deadline: "1 millis" }))
      yield* settle
      for (let i = 0; i < 6; i++) {
        yield* TestClock.adjust("8 seconds")
        yield* settle
      }
      const delays = statuses.flatMap((s) => (s._tag === "Reconnecting" ? [[s.attempt, s.delay]] : []))
      expect(delays.length).toBeGreaterThanOrEqual(5)
      for (const [attempt, delay] of delays) {
        const base = Math.min(8000, 1000 * 2 ** (attempt! - 1))
        expect(delay).toBeGreaterThanOrEqual(base / 2)
        expect(delay).toBeLessThanOrEqual(base)
      }
      expect(new Set(delays.map(([, d]) => d)).size).toBeGreaterThan(1)
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("learns why a handshake was refused: another protocol version, or not allowed", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const older = Channel.make({
        ...chat.definition,
        server: Schema.Union([Schema.TaggedStruct("Old", {})])
      })
      const stale = yield* Client.make(older, {
        url: "ws://test/ws/chat?token=1",
        WebSocket: h.WebSocket,
        fetch: h.fetch
      })
      const anonymous = yield* clientOf(h, "nobody")
      yield* settle
      const status = yield* stale.currentStatus
      expect(status).toMatchObject({ _tag: "Refused", status: 400, error: "ProtocolMismatch" })
      expect(status._tag === "Refused" && status.message).toContain("protocol version differs")
      expect(yield* anonymous.currentStatus).toMatchObject({
        _tag: "Refused",
        status: 401,
        error: "Unauthorized"
      })
      expect(yield* Effect.flip(stale.send({ _tag: "Whoami" }))).toMatchObject({ reason: "Closed" })
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("notices a silent server with its own heartbeat and reconnects", () =>
    Effect.gen(function* () {
      const h = yield* harness({ heartbeat: false })
      const ada = yield* clientOf(h, "1", {
        heartbeat: { interval: "10 seconds", timeout: "5 seconds" },
        reconnect: { initialDelay: "1 second", jitter: 0 }
      })
      const statuses = yield* collect(ada.status)
      yield* ada.awaitOpen
      yield* TestClock.adjust("10 seconds")
      yield* settle
      expect(h.sockets[0]!.readyState).toBe(1)
      // The server stops being heard: within an interval and a timeout after its last frame (the
      // answer to the heartbeat at 10 s), the client gives the connection up.
      h.sockets[0]!.pause()
      for (let i = 0; i < 4; i++) {
        yield* TestClock.adjust("5 seconds")
        yield* settle
      }
      expect(statuses.find((s) => s._tag === "Reconnecting")).toMatchObject({
        reason: { _tag: "HeartbeatTimeout", code: 4003 }
      })
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(yield* ada.currentStatus).toEqual({ _tag: "Open" })
      expect(h.sockets).toHaveLength(2)
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("keeps a quiet, healthy connection open with its heartbeat: the server's answer counts", () =>
    Effect.gen(function* () {
      const h = yield* harness({ heartbeat: false })
      const ada = yield* clientOf(h, "1", { heartbeat: { interval: "10 seconds", timeout: "5 seconds" } })
      const statuses = yield* collect(ada.status)
      yield* ada.awaitOpen
      for (let i = 0; i < 12; i++) {
        yield* TestClock.adjust("5 seconds")
        yield* settle
      }
      expect(statuses.map((s) => s._tag)).toEqual(["Connecting", "Open"])
      expect(h.sockets).toHaveLength(1)
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("closes for good: status Closed, streams end, sends fail", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const ada = yield* clientOf(h)
      const messages = yield* Effect.forkScoped(Stream.runCollect(ada.messages))
      yield* ada.awaitOpen
      yield* settle
      yield* ada.close
      yield* settle
      expect(yield* ada.currentStatus).toMatchObject({ _tag: "Closed" })
      expect(Array.from(yield* Fiber.join(messages))).toEqual([{ _tag: "Notice", text: "welcome Ada" }])
      expect(yield* Effect.flip(ada.send({ _tag: "Whoami" }))).toMatchObject({ reason: "Closed" })
      expect(h.sockets[0]!.readyState).toBe(3)
    }).pipe(Effect.provide(TestLayer))
  )
})
