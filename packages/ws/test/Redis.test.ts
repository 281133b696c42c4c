/**
 * Several processes, one Redis: two server processes (children of this test, on 127.0.0.1) fan
 * topics out through the real Redis at 127.0.0.1:6379. An event published on one node reaches
 * subscribers on the other, offsets are one sequence across nodes, a client resumes on the other
 * node, presence spans nodes and forgets a node that died.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { type ChildProcess, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { fileURLToPath } from "node:url"
import { createClient } from "redis"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Client, PubSub } from "../src/index.ts"
import * as PubSubRedis from "../src/PubSubRedis.ts"
import { chat, roomId } from "./fixtures.ts"
import * as Testing from "../src/Testing.ts"

const prefix = `strata:ws:test:${randomUUID()}:`
const script = fileURLToPath(new URL("./nodes/redis-node.ts", import.meta.url))

interface Node {
  readonly child: ChildProcess
  readonly url: string
}

const startNode = Effect.acquireRelease(
  Effect.promise(
    () =>
      new Promise<Node>((resolve, reject) => {
        const child = spawn(process.execPath, [script, prefix], { stdio: ["ignore", "pipe", "pipe"] })
        let stderr = ""
        child.stderr!.on("data", (d) => (stderr += d))
        child.stdout!.on("data", (d: Buffer) => {
          const line = d
            .toString()
            .split("\n")
            .find((l) => l.startsWith('{"port"'))
          if (line !== undefined) resolve({ child, url: `ws://127.0.0.1:${JSON.parse(line).port}/ws/chat` })
        })
        child.on("exit", (code) =>
          reject(new Error(`a node exited with ${code} before listening:\n${stderr}`))
        )
      })
  ),
  ({ child }) =>
    Effect.promise(
      () =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve()
          const timer = setTimeout(() => child.kill("SIGKILL"), 5000)
          child.once("exit", () => {
            clearTimeout(timer)
            resolve()
          })
          child.kill("SIGTERM")
        })
    )
)

/** One element at a time from a stream. */
const puller = <A, E>(stream: Stream.Stream<A, E>) =>
  Effect.map(Stream.toPull(stream), (pull) => {
    const buffer: Array<A> = []
    return Effect.suspend(() =>
      buffer.length > 0
        ? Effect.succeed(buffer.shift()!)
        : Effect.map(pull, (chunk) => {
            buffer.push(...chunk)
            return buffer.shift()!
          })
    )
  })

afterAll(async () => {
  const redis = createClient({ url: "redis://127.0.0.1:6379" })
  await redis.connect()
  for await (const keys of redis.scanIterator({ MATCH: `${prefix}*` })) {
    if (keys.length > 0) await redis.del(keys)
  }
  await redis.close()
})

describe("two server processes on one Redis", () => {
  it.live(
    "fan topics out across processes, resume on the other node, and share presence",
    () =>
      Effect.gen(function* () {
        const one = yield* startNode
        const two = yield* startNode
        const lobby = roomId("lobby")
        const ada = yield* Client.make(chat, { url: `${one.url}?token=1` })
        const bob = yield* Client.make(chat, { url: `${two.url}?token=2` })
        const adaRoom = yield* puller(ada.subscribe("room", lobby))
        const bobRoom = yield* puller(bob.subscribe("room", lobby))
        const adaJoined = yield* adaRoom
        expect(adaJoined).toMatchObject({ _tag: "Joined" })
        expect(yield* bobRoom).toMatchObject({
          _tag: "Joined",
          epoch: (adaJoined as { epoch: string }).epoch
        })

        // Published on node one, received on node two; one offset sequence for both nodes.
        yield* ada.send({ _tag: "Say", room: lobby, text: "from one" })
        expect(yield* bobRoom).toMatchObject({
          _tag: "Message",
          offset: 1,
          payload: { from: "Ada", text: "from one" }
        })
        yield* bob.send({ _tag: "Say", room: lobby, text: "from two" })
        expect(yield* adaRoom).toMatchObject({ _tag: "Message", offset: 1 })
        expect(yield* adaRoom).toMatchObject({
          _tag: "Message",
          offset: 2,
          payload: { from: "Bob", text: "from two" }
        })
        expect(yield* bobRoom).toMatchObject({ _tag: "Message", offset: 2 })

        // Broadcasts cross nodes too.
        const bobMessages = yield* puller(bob.messages)
        yield* ada.send({ _tag: "Shout", text: "everyone" })
        expect(yield* bobMessages).toEqual({ _tag: "Notice", text: "everyone" })

        // Presence spans nodes.
        const members = yield* ada.presence("room", lobby)
        expect(members.map((m) => m.meta.name).toSorted()).toEqual(["Ada", "Bob"])

        // A client that saw offset 2 on node two resumes on node one and gets what it missed.
        yield* ada.send({ _tag: "Say", room: lobby, text: "missed 1" })
        yield* ada.send({ _tag: "Say", room: lobby, text: "missed 2" })
        expect(yield* adaRoom).toMatchObject({ offset: 3 })
        expect(yield* adaRoom).toMatchObject({ offset: 4 })
        const epoch = (adaJoined as { epoch: string }).epoch
        const resumed = yield* Testing.connect(chat, globalThis.WebSocket, `${one.url}?token=2`)
        resumed.send({ t: "j", n: "room", k: "lobby", f: { e: epoch, o: 2 } })
        expect(yield* resumed.next((f) => f.t === "j")).toMatchObject({ ok: { r: "recovered", o: 4, n: 2 } })
        expect(yield* resumed.next((f) => f.t === "e")).toMatchObject({ d: { text: "missed 1" } })
        expect(yield* resumed.next((f) => f.t === "e")).toMatchObject({ d: { text: "missed 2" } })
        yield* resumed.close()

        // Node two dies without a word: once its liveness key lapses, its members are gone.
        two.child.kill("SIGKILL")
        yield* Effect.sleep("1500 millis")
        const after = yield* ada.presence("room", lobby)
        expect(after.map((m) => m.meta.name)).toEqual(["Ada"])
      }),
    30_000
  )
})

describe("one fan-out contract, in memory and in Redis", () => {
  const contract = (pubsub: PubSub.PubSub["Service"]) =>
    Effect.gen(function* () {
      const topic = `contract-${randomUUID()}`
      const seen: Array<PubSub.Event> = []
      yield* pubsub.listen((event) => Effect.sync(() => void seen.push(event)))
      const fresh = yield* pubsub.replay(topic, undefined)
      expect(fresh).toMatchObject({ result: "fresh", offset: 0, events: [] })
      for (let i = 1; i <= 7; i++) {
        const published = yield* pubsub.publish({
          topic,
          payload: `{"n":${i}}`,
          history: 5,
          except: i === 1 ? "me" : undefined
        })
        expect(published).toEqual({ offset: i, epoch: fresh.epoch })
      }
      yield* Effect.sleep("100 millis")
      const mine = seen.filter((e) => e.topic === topic)
      expect(mine.map((e) => [e.offset, e.payload])).toEqual(
        [1, 2, 3, 4, 5, 6, 7].map((i) => [i, `{"n":${i}}`])
      )
      expect(mine[0]!.except).toBe("me")
      const recovered = yield* pubsub.replay(topic, { e: fresh.epoch, o: 4 })
      expect(recovered).toMatchObject({ result: "recovered", offset: 7 })
      expect(recovered.events.map((e) => e.offset)).toEqual([5, 6, 7])
      expect(yield* pubsub.replay(topic, { e: fresh.epoch, o: 1 })).toMatchObject({
        result: "gap",
        missed: 1
      })
      expect(yield* pubsub.replay(topic, { e: "other", o: 7 })).toMatchObject({ result: "gap", offset: 7 })
      // Broadcasts keep no history.
      expect(yield* pubsub.publish({ topic: `${topic}/*`, payload: "{}", history: 0 })).toEqual({
        offset: 0,
        epoch: ""
      })
      yield* pubsub.presence.join(topic, { id: "a", meta: '{"name":"A"}' })
      yield* pubsub.presence.join(topic, { id: "b", meta: "null" })
      yield* pubsub.presence.leave(topic, "b")
      expect(yield* pubsub.presence.list(topic)).toEqual([{ id: "a", meta: '{"name":"A"}' }])
    })

  it.live("in memory", () =>
    Effect.flatMap(
      Effect.sync(() => PubSub.makeMemory()),
      contract
    )
  )
  it.live("in Redis", () =>
    Effect.flatMap(PubSubRedis.make({ prefix }), contract).pipe(
      Effect.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379" }))
    )
  )
})
