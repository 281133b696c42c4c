/**
 * The chat example over real sockets on 127.0.0.1, with the typed Node client: the form login and
 * the refused upgrades, two users in a room (presence, messages both ways, the history, a room for
 * admins only), `src/main.ts` stopped and crashed with the room history and the sessions intact
 * (the clients come back with `Recovered` and what they missed), and two processes on one Redis.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Redis from "effect/persistence/Redis"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Client } from "@strata/ws"
import { randomUUID } from "node:crypto"
import { request as httpRequest } from "node:http"
import { connect as tcpConnect } from "node:net"
import { chat, type RoomId } from "../src/Chat.ts"
import {
  type Address,
  connect,
  login,
  type Network,
  pageAs,
  puller,
  pullUntil,
  startInProcess,
  startProcess,
  tempDir
} from "./harness.ts"

const lobby = "lobby" as RoomId
const staff = "staff" as RoomId

type Delivery = Client.Delivery<typeof chat.definition.topics.room.payload.Type>
const isMessage = (d: Delivery): d is Extract<Delivery, { _tag: "Message" }> => d._tag === "Message"
/** How a join (or a join again after a reconnect) went: `Joined`, `Recovered` or `Gap`. */
const isJoinResult = (d: Delivery): d is Exclude<Delivery, { _tag: "Message" }> => d._tag !== "Message"

/** The session cookie of a user who logged in through the form. */
const loggedIn = (address: Address, username: string) =>
  Effect.map(login(address.http, username, `${username}-password`), (result) => {
    expect(result.status).toBe(303)
    return result.cookie!
  })

/** The HTTP answer to a WebSocket handshake, as curl would show it. */
const handshake = (address: Address, headers: Record<string, string>) =>
  Effect.promise(
    () =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(`${address.http}/ws/chat`, {
          agent: false,
          headers: {
            connection: "Upgrade",
            upgrade: "websocket",
            "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-protocol": chat.protocol,
            ...headers
          }
        })
        req.on("response", (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        })
        req.on("upgrade", (res, socket) => {
          socket.destroy()
          resolve(res.statusCode ?? 0)
        })
        req.on("error", reject)
        req.end()
      })
  )

const waitForStatus = (client: Client.Client<typeof chat>, tag: Client.Status["_tag"]) =>
  Stream.runHead(Stream.filter(client.status, (s) => s._tag === tag)).pipe(
    Effect.map(Option.getOrThrow),
    Effect.timeoutOrElse({
      duration: "10 seconds",
      orElse: () => Effect.die(new Error(`the client was not ${tag} within 10 s`))
    })
  )

describe("chat example: logging in and the upgrade", () => {
  it.live(
    "logs in through the CSRF-protected form; the channel needs the session and the page's origin",
    () =>
      Effect.gen(function* () {
        const address = yield* startInProcess({ dataDir: yield* tempDir("chat-login-") })

        const wrong = yield* login(address.http, "bob", "guess")
        expect([wrong.status, wrong.location]).toEqual([303, "/"])
        const bob = yield* loggedIn(address, "bob")
        expect(bob).not.toBe(wrong.cookie)
        const page = yield* pageAs(address.http, bob)
        expect(page).toContain('data-user-name="Bob"')
        expect(page).toContain('<script type="module" src="/assets/app/browser/page.ts">')

        // A form post without the page's token is refused.
        const forged = yield* Effect.promise(() =>
          fetch(`${address.http}/logout`, { method: "POST", headers: { cookie: bob }, redirect: "manual" })
        )
        expect(forged.status).toBe(403)

        expect(yield* handshake(address, {})).toBe(401)
        expect(yield* handshake(address, { cookie: bob, origin: "http://evil.example" })).toBe(403)
        // Same site, other port: the cookie would come along, the origin check refuses it.
        expect(yield* handshake(address, { cookie: bob, origin: "http://127.0.0.1:1" })).toBe(403)
        expect(yield* handshake(address, { cookie: bob, origin: address.http })).toBe(101)
        expect(yield* handshake(address, { cookie: bob })).toBe(101)

        // The typed client learns why through its probe, and stops instead of retrying.
        const anonymous = yield* connect(address, undefined)
        expect(yield* waitForStatus(anonymous, "Refused")).toMatchObject({ status: 401 })
      }).pipe(Effect.scoped)
  )
})

describe("chat example: two users in a room", () => {
  it.live("see each other, get each other's messages and the history; Staff is for admins", () =>
    Effect.gen(function* () {
      const address = yield* startInProcess({ dataDir: yield* tempDir("chat-room-") })
      const alice = yield* connect(address, yield* loggedIn(address, "alice"))
      const bob = yield* connect(address, yield* loggedIn(address, "bob"))
      const aliceNotices = yield* puller(alice.messages)
      const aliceLobby = yield* puller(alice.subscribe("room", lobby))
      const bobLobby = yield* puller(bob.subscribe("room", lobby))
      expect(yield* aliceLobby).toMatchObject({ _tag: "Joined", offset: 0 })
      expect(yield* bobLobby).toMatchObject({ _tag: "Joined", offset: 0 })

      // Presence: what each join handler returned, on every node.
      const members = yield* alice.presence("room", lobby)
      expect(members.map((m) => m.meta).toSorted((a, b) => a.name.localeCompare(b.name))).toEqual([
        { userId: "alice", name: "Alice" },
        { userId: "bob", name: "Bob" }
      ])
      // The page says `Entered` once its join is confirmed; the others are told to look again.
      yield* bob.send({ _tag: "Entered", room: lobby })
      expect(yield* aliceNotices).toEqual({ _tag: "PresenceChanged", room: lobby })

      yield* alice.send({ _tag: "Say", room: lobby, text: "  hello Bob  " })
      const fromAlice = {
        _tag: "Message",
        offset: 1,
        payload: { userId: "alice", name: "Alice", text: "hello Bob" }
      }
      expect(yield* bobLobby).toMatchObject(fromAlice)
      expect(yield* aliceLobby).toMatchObject(fromAlice)
      yield* bob.send({ _tag: "Say", room: lobby, text: "hi Alice" })
      expect(yield* aliceLobby).toMatchObject({
        _tag: "Message",
        offset: 2,
        payload: { name: "Bob", text: "hi Alice" }
      })

      const history = yield* bob.request("history", { room: lobby, limit: 10 })
      expect(history.messages.map((m) => [m.offset, m.message.name, m.message.text])).toEqual([
        [1, "Alice", "hello Bob"],
        [2, "Bob", "hi Alice"]
      ])
      expect(
        (yield* bob.request("history", { room: lobby, limit: 1 })).messages.map((m) => m.offset)
      ).toEqual([2])

      // The join authorization: Bob is refused with the reason, Alice (an admin) gets in.
      const denied = yield* Effect.flip(Stream.runDrain(bob.subscribe("room", staff)))
      expect(denied).toMatchObject({
        _tag: "JoinError",
        reason: "Denied",
        message: "Staff is for admins only"
      })
      expect(yield* Effect.flip(bob.request("history", { room: staff, limit: 10 }))).toEqual({
        _tag: "HistoryRefused",
        reason: "Staff is for admins only"
      })
      const bobNotices = yield* puller(bob.messages)
      yield* bob.send({ _tag: "Say", room: staff, text: "let me in" })
      expect(yield* bobNotices).toEqual({ _tag: "Notice", text: "Staff is for admins only" })
      const aliceStaff = yield* puller(alice.subscribe("room", staff))
      expect(yield* aliceStaff).toMatchObject({ _tag: "Joined", offset: 0 })

      // When Bob goes, the rooms he entered are told.
      yield* bob.close
      expect(yield* aliceNotices).toEqual({ _tag: "PresenceChanged", room: lobby })
      expect((yield* alice.presence("room", lobby)).map((m) => m.meta.name)).toEqual(["Alice"])
    }).pipe(Effect.scoped)
  )
})

describe("chat example: restarts", () => {
  it.live(
    "src/main.ts stopped, then killed: histories and sessions survive, clients resume with what they missed",
    () =>
      Effect.gen(function* () {
        const dataDir = yield* tempDir("chat-restart-")
        const first = yield* startProcess({ dataDir, port: 0 })
        const address = first.address
        const network: Network = { offline: false }
        const alice = yield* connect(address, yield* loggedIn(address, "alice"), { network })
        const bob = yield* connect(address, yield* loggedIn(address, "bob"))
        const aliceLobby = yield* puller(alice.subscribe("room", lobby), "10 seconds")
        const bobLobby = yield* puller(bob.subscribe("room", lobby), "10 seconds")
        yield* aliceLobby
        yield* bobLobby
        yield* alice.send({ _tag: "Say", room: lobby, text: "before the restart" })
        const before = yield* pullUntil(aliceLobby, isMessage)
        yield* pullUntil(bobLobby, isMessage)

        // A graceful stop (1001 to every client); Alice's network is down until Bob has posted.
        network.offline = true
        yield* first.stop("SIGTERM")
        const second = yield* startProcess({ dataDir, port: address.port })
        expect(yield* pullUntil(bobLobby, isJoinResult)).toEqual({ _tag: "Recovered", replayed: 0 })
        yield* bob.send({ _tag: "Say", room: lobby, text: "while Alice was away" })
        const missed = yield* pullUntil(bobLobby, isMessage)
        // The same history: its epoch survived, and offsets go on.
        expect([missed.epoch, missed.offset]).toEqual([before.epoch, before.offset + 1])
        network.offline = false
        expect(yield* pullUntil(aliceLobby, isJoinResult)).toEqual({ _tag: "Recovered", replayed: 1 })
        expect(yield* aliceLobby).toMatchObject({
          _tag: "Message",
          offset: missed.offset,
          payload: { name: "Bob", text: "while Alice was away" }
        })

        // A crash: nothing acknowledged is lost either.
        yield* alice.send({ _tag: "Say", room: lobby, text: "just before the crash" })
        yield* pullUntil(aliceLobby, isMessage)
        yield* pullUntil(bobLobby, isMessage)
        yield* second.stop("SIGKILL")
        yield* startProcess({ dataDir, port: address.port })
        expect(yield* pullUntil(aliceLobby, isJoinResult)).toEqual({ _tag: "Recovered", replayed: 0 })
        expect(yield* pullUntil(bobLobby, isJoinResult)).toEqual({ _tag: "Recovered", replayed: 0 })
        const history = yield* alice.request("history", { room: lobby, limit: 50 })
        expect(history.epoch).toBe(before.epoch)
        expect(history.messages.map((m) => m.message.text)).toEqual([
          "before the restart",
          "while Alice was away",
          "just before the crash"
        ])
      }).pipe(Effect.scoped),
    60_000
  )
})

// The Redis test needs a real Redis (see .ci/run); it says so when there is none.
const redisUrl = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379"
const redisUp = await new Promise<boolean>((resolve) => {
  const { hostname, port } = new URL(redisUrl)
  const socket = tcpConnect({ host: hostname, port: Number(port || 6379) })
  socket.setTimeout(1000)
  socket.once("connect", () => (socket.destroy(), resolve(true)))
  socket.once("timeout", () => (socket.destroy(), resolve(false)))
  socket.once("error", () => resolve(false))
})
if (!redisUp)
  process.stderr.write(`chat.test.ts: the Redis test is skipped, no Redis answers at ${redisUrl}\n`)

const withRedis = redisUp ? describe : describe.skip

withRedis("chat example: several processes on one Redis", () => {
  it.live("a message, the presence and the session reach across servers", () =>
    Effect.gen(function* () {
      const redisPrefix = `strata:chat:test:${randomUUID()}:`
      // Forget this test's keys afterwards.
      yield* Effect.addFinalizer(() =>
        Effect.gen(function* () {
          const redis = yield* Redis.Redis
          const keys = yield* redis.send<ReadonlyArray<string>>("KEYS", `${redisPrefix}*`)
          if (keys.length > 0) yield* redis.send("DEL", ...keys)
        }).pipe(Effect.provide(NodeRedis.layer({ url: redisUrl })), Effect.ignore)
      )
      // One data directory: both processes sign sessions with its key.
      const dataDir = yield* tempDir("chat-redis-")
      const one = yield* startInProcess({ dataDir, redisUrl, redisPrefix })
      const two = yield* startInProcess({ dataDir, redisUrl, redisPrefix })
      const aliceCookie = yield* loggedIn(one, "alice")
      const alice = yield* connect(one, aliceCookie)
      // Bob's session was made on the first server; the second reads it from Redis.
      const bob = yield* connect(two, yield* loggedIn(one, "bob"))
      const aliceLobby = yield* puller(alice.subscribe("room", lobby))
      const bobLobby = yield* puller(bob.subscribe("room", lobby))
      yield* aliceLobby
      yield* bobLobby
      yield* alice.send({ _tag: "Say", room: lobby, text: "across processes" })
      expect(yield* pullUntil(bobLobby, isMessage)).toMatchObject({
        payload: { name: "Alice", text: "across processes" }
      })
      const members = yield* bob.presence("room", lobby)
      expect(members.map((m) => m.meta.name).toSorted()).toEqual(["Alice", "Bob"])
      expect(
        (yield* bob.request("history", { room: lobby, limit: 10 })).messages.map((m) => m.message.text)
      ).toEqual(["across processes"])
    }).pipe(Effect.scoped)
  )
})
