/**
 * Type tests of channels: each rule has a case that must compile and one that must not
 * (`@ts-expect-error`). Run by `tsc -p tsconfig.typetest.json`.
 */
import { App, Router } from "@strata/core"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { Channel, Client, Hub } from "../src/index.ts"
import {
  auth,
  chat,
  ClientMessage,
  CurrentUser,
  RoomId,
  roomId,
  ServerMessage,
  Users
} from "../test/fixtures.ts"
import * as Schema from "effect/Schema"

const lobby = roomId("lobby")

// A channel without requests (the chat fixture has some, and then every one needs a handler).
const rooms = Channel.make({
  client: ClientMessage,
  server: ServerMessage,
  topics: {
    room: {
      key: RoomId,
      payload: Schema.Struct({ from: Schema.String, text: Schema.String }),
      presence: Schema.Struct({ name: Schema.String })
    }
  }
})

// 1. Publishing to a topic checks the payload against the topic's schema (and the key and name).
Channel.route(rooms, "/a", {
  onMessage: (_message, connection) => connection.publish("room", lobby, { from: "a", text: "b" })
})
Channel.route(rooms, "/a", {
  // @ts-expect-error the payload of room has no `body`
  onMessage: (_message, connection) => connection.publish("room", lobby, { from: "a", body: "b" })
})
Channel.route(rooms, "/a", {
  // @ts-expect-error a plain string is not a RoomId
  onMessage: (_message, connection) => connection.publish("room", "lobby", { from: "a", text: "b" })
})
Channel.publish(rooms, "room", lobby, { from: "system", text: "hi" })
// @ts-expect-error the channel has no topic `rooms`
Channel.publish(rooms, "rooms", lobby, { from: "system", text: "hi" })
// @ts-expect-error text must be a string
Channel.publish(rooms, "room", lobby, { from: "system", text: 1 })

// 2. A client sends only messages of the client schema, and requests take their own input.
declare const client: Client.Client<typeof chat>
client.send({ _tag: "Say", room: lobby, text: "hello" })
// @ts-expect-error Nope is not a message of the client schema
client.send({ _tag: "Nope" })
// @ts-expect-error Echoed is a server message, not a client one
client.send({ _tag: "Echoed", text: "hello" })
const history = client.request("history", { room: lobby })
// @ts-expect-error history takes a room
client.request("history", { ms: 1 })
// @ts-expect-error the channel has no request `histories`
client.request("histories", { room: lobby })
// A request's typed error is in the error channel.
const _typedError: Effect.Effect<
  ReadonlyArray<string>,
  { readonly _tag: "NoSuchRoom"; readonly room: string } | Client.RequestError
> = history
// Topic streams carry the topic's payload.
const _payloads = Effect.map(Client.make(chat, { url: "ws://x" }), (c) =>
  c.subscribe("room", lobby).pipe((stream) => stream)
)

// 3. Handlers' services flow into the route: reading a service the upgrade's middleware do not
//    provide does not compile at serve, and app services become the app's requirements.
const reads = Channel.route(rooms, "/chat", {
  onMessage: (_message, connection) =>
    Effect.flatMap(CurrentUser, (user) => connection.send({ _tag: "Notice", text: user.name }))
})
App.layer(Router.make([reads]).pipe(Router.use(auth)))
// @ts-expect-error CurrentUser is read by the route, but no middleware on its path provides it
App.layer(Router.make([reads]))
const _needsHub: Router.Router.Requires<ReturnType<typeof Router.make<typeof reads>>> extends infer R
  ? [Hub.Hub] extends [R]
    ? true
    : false
  : never = true
const _needsUsers: [Users] extends [App.Services<ReturnType<typeof provided>>] ? true : false = true
function provided() {
  return Router.make([reads]).pipe(Router.use(auth))
}
// Join handlers and request handlers count too.
const joins = Channel.route(rooms, "/chat", {
  join: { room: () => Effect.map(CurrentUser, (user) => ({ name: user.name })) }
})
// @ts-expect-error CurrentUser is read by a join handler, unprovided
App.layer(Router.make([joins]))

// 4. A request handler must answer with the response type and fail only with the error schema.
Channel.route(chat, "/chat", {
  requests: {
    history: () => Effect.succeed(["a"]),
    slow: ({ ms }) => Effect.succeed(ms),
    count: () => Effect.succeed(1)
  }
})
Channel.route(chat, "/chat", {
  requests: {
    // @ts-expect-error history answers strings, not numbers
    history: () => Effect.succeed([1]),
    slow: ({ ms }) => Effect.succeed(ms),
    count: () => Effect.succeed(1)
  }
})
Channel.route(chat, "/chat", {
  requests: {
    // @ts-expect-error history fails only with NoSuchRoom
    history: () => Effect.fail({ _tag: "Other" as const }),
    slow: ({ ms }) => Effect.succeed(ms),
    count: () => Effect.succeed(1)
  }
})
Channel.route(chat, "/chat", {
  // @ts-expect-error every request needs a handler (count is missing)
  requests: { history: () => Effect.succeed([]), slow: () => Effect.succeed(1) }
})

// 5. A join handler returns the topic's presence, and sends take server messages only.
Channel.route(rooms, "/chat", {
  // @ts-expect-error the presence of room is { name: string }
  join: { room: () => Effect.succeed({ nickname: "x" }) }
})
Channel.route(rooms, "/chat", {
  // @ts-expect-error Say is a client message; connections send server messages
  onOpen: (connection) => connection.send({ _tag: "Say", room: lobby, text: "x" })
})
Channel.route(rooms, "/chat", {
  // @ts-expect-error message handlers handle their errors (only the fan-out's may escape)
  onMessage: () => Effect.fail(new Error("unhandled"))
})

// 6. A client is scoped.
const _scoped: Effect.Effect<Client.Client<typeof chat>, never, Scope.Scope> = Client.make(chat, {
  url: "ws://x"
})
