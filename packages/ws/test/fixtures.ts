/**
 * A chat channel, its users, an auth middleware reading `?token=` (browsers cannot set headers on a
 * WebSocket) and an in-process harness: the app's web handler run with the test's own services
 * (TestClock, the hub), and in-memory WebSockets that go through it.
 */
import { App, HttpError, Middleware, Route, Router } from "@strata/core"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as HttpEffect from "effect/http/HttpEffect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Channel, Hub, Transport } from "../src/index.ts"

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
import { chat } from "./chat.ts"

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
 * The app's web handler, run with the services of the calling test (its TestClock and hub), and
 * in-memory WebSockets that connect through it.
 */
export const harness = (
  options?: Channel.RouteOptions
): Effect.Effect<
  {
    readonly handler: (request: Request) => Promise<Response>
    readonly WebSocket: Transport.WebSocketConstructor
    readonly fetch: (url: string, init?: RequestInit) => Promise<Response>
    readonly sockets: ReadonlyArray<Transport.MemoryWebSocket>
    readonly hub: Hub.Hub["Service"]
  },
  never,
  Scope.Scope | Hub.Hub | Users
> =>
  Effect.gen(function* () {
    const memory = Transport.memory()
    const httpEffect = yield* HttpRouter.toHttpEffect(App.layer(makeApp(options)))
    const context = yield* Effect.context<Hub.Hub | Users>()
    const handler = HttpEffect.toWebHandlerWith(Context.add(context, Transport.Upgrader, memory.upgrader))(
      httpEffect as any
    ) as (request: Request) => Promise<Response>
    return {
      handler,
      WebSocket: memory.WebSocket(handler),
      fetch: memory.fetch(handler),
      sockets: memory.sockets,
      hub: yield* Hub.Hub
    }
  })

export const TestLayer = Layer.mergeAll(Hub.layer(), UsersLive)
