/**
 * A chat channel, its users, an auth middleware reading `?token=` (browsers cannot set headers on a
 * WebSocket) and an in-process harness: the app's web handler run with the test's own services
 * (TestClock, the hub), and in-memory WebSockets that go through it.
 */
import { HttpError, Middleware, Route, Router } from "@strata/core"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fc from "fast-check"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Channel, Hub } from "../src/index.ts"
import * as Testing from "../src/Testing.ts"

export interface User {
  readonly id: string
  readonly name: string
  readonly role: "admin" | "member" | "banned"
}

export class CurrentUser extends Middleware.Service<CurrentUser, User>()("test/ws/CurrentUser") {}

export class Users extends Context.Service<Users, { readonly find: (id: string) => User | undefined }>()(
  "test/ws/Users"
) {}

export const users: ReadonlyArray<User> = [
  { id: "1", name: "Ada", role: "admin" },
  { id: "2", name: "Bob", role: "member" },
  { id: "3", name: "Eve", role: "banned" }
]

export const UsersLive = Layer.succeed(Users, { find: (id: string) => users.find((u) => u.id === id) })

/** `?token=<id>`; 401 without a known user, 403 for a banned one. */
export const auth = Middleware.make({
  name: "auth",
  provides: [CurrentUser],
  raises: ["Unauthorized", "Forbidden"],
  apply: (next) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const token = new URL(request.url, "http://x").searchParams.get("token") ?? ""
      const user = (yield* Users).find(token)
      if (user === undefined) return yield* new HttpError.Unauthorized({ challenge: 'Bearer realm="chat"' })
      if (user.role === "banned") return yield* new HttpError.Forbidden({ reason: "banned" })
      return yield* Effect.provideService(next, CurrentUser, user)
    })
})

export { chat, ClientMessage, NoSuchRoom, RoomId, roomId, ServerMessage } from "./chat.ts"
import { chat, roomId } from "./chat.ts"

/** How often `count` ran, per test (to check duplicate request ids run once). */
export const counter = { value: 0 }

/** The reasons `onClose` saw, newest last. */
export const closes: Array<{ readonly id: string; readonly reason: unknown }> = []

export const chatRoute = (options?: Channel.RouteOptions) =>
  Channel.route(
    chat,
    "/chat",
    {
      onOpen: (connection) =>
        Effect.flatMap(CurrentUser, (user) =>
          connection.send({ _tag: "Notice", text: `welcome ${user.name}` })
        ),
      onMessage: (message, connection) =>
        Effect.gen(function* () {
          const user = yield* CurrentUser
          switch (message._tag) {
            case "Say":
              return yield* connection.publish("room", message.room, { from: user.name, text: message.text })
            case "Echo":
              return yield* connection.send({ _tag: "Echoed", text: message.text })
            case "Whoami":
              return yield* connection.send({ _tag: "You", id: user.id, name: user.name })
            case "Shout":
              return yield* connection.broadcast({ _tag: "Notice", text: message.text }, { exceptSelf: true })
            case "Flood":
              for (let n = 0; n < message.count; n++) yield* connection.send({ _tag: "Tick", n })
              return
            case "Kick":
              return yield* connection.close({ code: 4100, reason: "kicked" })
            case "Crash":
              return yield* Effect.die(new Error("boom"))
            case "Follow":
              return yield* connection.join("room", message.room)
            case "Wait":
              yield* Effect.sleep(message.ms)
              return yield* connection.send({ _tag: "Notice", text: `waited ${message.ms}` })
          }
        }),
      onClose: (connection, reason) => Effect.sync(() => void closes.push({ id: connection.id, reason })),
      join: {
        room: (id) =>
          Effect.gen(function* () {
            const user = yield* CurrentUser
            if (id === "secret" && user.role !== "admin") {
              return yield* new Channel.Denied({ reason: "admins only" })
            }
            return { name: user.name }
          })
      },
      requests: {
        history: ({ room }) =>
          room === "nowhere"
            ? Effect.fail({ _tag: "NoSuchRoom" as const, room })
            : Effect.succeed(["hello", "world"]),
        slow: ({ ms }) => Effect.as(Effect.sleep(ms), ms),
        count: () => Effect.sync(() => ++counter.value)
      }
    },
    options
  )

export const makeApp = (options?: Channel.RouteOptions) =>
  Router.make([
    Route.get("/health", HttpServerResponse.text("ok")),
    Router.group("/ws", [chatRoute(options)]).pipe(Router.use(auth))
  ])

/**
 * The app in memory under the calling test's services (its TestClock and hub): the kit's server,
 * with in-memory WebSockets, typed clients and raw connections that go through it.
 */
export const harness = (options?: Channel.RouteOptions) => Testing.server(makeApp(options))

/**
 * The kit's frame arbitraries for the chat channel: the messages whose work grows with a number
 * kept small, known rooms among the generated keys, and oversize frames for a 4 KiB limit.
 */
export const frameOptions: Testing.InvalidFrameOptions<typeof chat> = {
  message: (derived) =>
    derived.map((m) =>
      m._tag === "Flood" ? { ...m, count: Math.abs(m.count) % 5 } : m._tag === "Wait" ? { ...m, ms: 1000 } : m
    ),
  requests: { slow: fc.nat({ max: 2000 }).map((ms) => ({ ms })) },
  keys: { room: (derived) => fc.oneof(fc.constantFrom(roomId("lobby"), roomId("secret")), derived) },
  maxMessageSize: 4096
}

export const TestLayer = Layer.mergeAll(Hub.layer(), UsersLive)
