/**
 * The chat example in memory with `@strata/ws/Testing`: the whole app (pages, form login, the
 * session middleware on the upgrade, the channel) runs in this process under the test's TestClock,
 * with its real SQLite stores in a temporary directory. Two users talk through typed clients, and
 * frames generated from the example's own channel never break the server.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/testing/TestClock"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as fc from "fast-check"
import * as Property from "@strata/core/Property"
import * as Testing from "@strata/ws/Testing"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { makeApp, services } from "../src/app.ts"
import { chat, type RoomId, rooms } from "../src/Chat.ts"

const dataDir = mkdtempSync(join(tmpdir(), "chat-memory-"))
afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

const app = makeApp({
  keys: [Redacted.make("a test key of at least thirty-two bytes")],
  secureCookies: false
})
const layer = services({ dataDir })

const cookieOf = (response: Response): string | undefined =>
  response.headers
    .getSetCookie()
    .map((c) => c.split(";")[0]!)
    .find((c) => c.startsWith("sid="))

/** Logs in through the form, as a browser would, against the in-memory app; the session cookie. */
const login = (server: Testing.Server, username: string) =>
  Effect.promise(async () => {
    const page = await server.fetch("/")
    const anonymous = cookieOf(page)!
    const token = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!
    const response = await server.fetch("/login", {
      method: "POST",
      redirect: "manual",
      headers: {
        origin: "http://test",
        cookie: anonymous,
        "content-type": "application/x-www-form-urlencoded"
      },
      body: new URLSearchParams({ _csrf: token, username, password: `${username}-password` }).toString()
    })
    expect(response.status).toBe(303)
    return { cookie: cookieOf(response)! }
  })

const lobby = "lobby" as RoomId

describe("chat example in memory", () => {
  it.effect("two users in the lobby: presence, a post both see, and the history", () =>
    Effect.gen(function* () {
      const server = yield* Testing.server(app)
      const alice = yield* server.client(chat, "/ws/chat", { headers: yield* login(server, "alice") })
      const bob = yield* server.client(chat, "/ws/chat", { headers: yield* login(server, "bob") })
      yield* Effect.all([alice.awaitOpen, bob.awaitOpen])
      const bobsLobby = yield* Stream.toPull(bob.subscribe("room", lobby))
      expect(yield* bobsLobby).toMatchObject([{ _tag: "Joined" }])
      const alicesLobby = yield* Stream.toPull(alice.subscribe("room", lobby))
      expect(yield* alicesLobby).toMatchObject([{ _tag: "Joined" }])
      expect((yield* bob.presence("room", lobby)).map((m) => m.meta.name).toSorted()).toEqual([
        "Alice",
        "Bob"
      ])
      yield* alice.send({ _tag: "Say", room: lobby, text: "  hello  " })
      expect(yield* bobsLobby).toMatchObject([
        { _tag: "Message", payload: { userId: "alice", name: "Alice", text: "hello" } }
      ])
      const history = yield* bob.request("history", { room: lobby, limit: 10 })
      expect(history.messages.at(-1)?.message.text).toBe("hello")
      // Staff is for admins: Bob's join is refused, with the room's reason.
      const staff = yield* Effect.flip(Stream.runHead(bob.subscribe("room", "staff" as RoomId)))
      expect(staff).toMatchObject({ _tag: "JoinError", reason: "Denied" })
    }).pipe(Effect.provide(layer))
  )

  it("no frames, generated from the example's channel, break the server", () =>
    Testing.neverCrashes(app, layer, {
      channel: chat,
      url: "/ws/chat",
      headers: (server) => Effect.map(login(server, "bob"), ({ cookie }) => ({ cookie })),
      frames: fc.array(
        Testing.frames(chat, {
          // The catalog's rooms (Staff is for admins) among the generated ids, so joins and posts
          // are taken as well as refused.
          keys: { room: (derived) => fc.oneof(fc.constantFrom(...rooms.map((room) => room.id)), derived) }
        }),
        { maxLength: 20 }
      ),
      numRuns: 25,
      timeout: 20_000
    }))

  it("a member's valid frames are never refused as invalid: only the rooms' rules deny them", () =>
    Property.effect(
      [
        fc.array(Testing.validFrames(chat, { keys: { room: fc.constantFrom(...rooms.map((r) => r.id)) } }), {
          maxLength: 15
        })
      ],
      ([frames]) =>
        Effect.scoped(
          Effect.gen(function* () {
            const server = yield* Testing.server(app)
            const raw = yield* server.connect(chat, "/ws/chat", { headers: yield* login(server, "bob") })
            for (const frame of frames) raw.send(frame)
            yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 10)))
            yield* TestClock.adjust("1 minute")
            expect(raw.closed).toBeUndefined()
            for (const frame of raw.frames) {
              if (typeof frame === "string") throw new Error(`not a frame: ${frame}`)
              expect(frame.t).not.toBe("x")
              // Presence needs a join first; history of Staff is refused to Bob with its typed error.
              if (frame.t === "r" && "fail" in frame) expect(frame.fail._tag).toBe("InvalidRequest")
              if (frame.t === "j" && "no" in frame)
                expect(frame).toMatchObject({ k: "staff", no: { _tag: "Denied" } })
            }
          })
        ),
      { layer, numRuns: 25, timeout: 20_000 }
    ))
})
