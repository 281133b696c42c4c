/**
 * The chat app: the pages, the browser's modules, and the chat channel at `/ws/chat` behind the
 * same session as the pages; its services — users, sessions, the hub and its fan-out with the room
 * histories — in SQLite files under a data directory, or in Redis for several processes.
 */
import { NodeHttpServer } from "@effect/platform-node"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, Logger, RateLimit, RequestId, Route, Router, SecurityHeaders } from "@strata/core"
import * as SessionRedis from "@strata/core/SessionRedis"
import * as SessionSqlite from "@strata/core/SessionSqlite"
import { Channel, Hub } from "@strata/ws"
import * as PubSubRedis from "@strata/ws/PubSubRedis"
import { randomBytes } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { createServer } from "node:http"
import { join } from "node:path"
import * as Assets from "./Assets.ts"
import { CurrentUser, sameOriginUpgrade, session, sessionUser } from "./Auth.ts"
import { chat, type RoomId } from "./Chat.ts"
import { pages } from "./pages.ts"
import * as PubSubSqlite from "./PubSubSqlite.ts"
import * as Rooms from "./Rooms.ts"
import * as Users from "./Users.ts"

/**
 * The rooms each connection of this process said it entered, so that when it closes the members
 * of those rooms are told to look again. The channel has no hook for a leave, so the page says
 * `Entered` once its join is confirmed and `Left` when it switches rooms.
 */
export class EnteredRooms extends Context.Service<
  EnteredRooms,
  {
    readonly add: (connection: string, room: RoomId) => void
    readonly remove: (connection: string, room: RoomId) => void
    /** Forgets the connection; returns the rooms it was in. */
    readonly take: (connection: string) => ReadonlyArray<RoomId>
  }
>()("example-chat/EnteredRooms") {
  static readonly layer = Layer.sync(EnteredRooms)(() => {
    const byConnection = new Map<string, Set<RoomId>>()
    return EnteredRooms.of({
      add: (connection, room) => {
        const set = byConnection.get(connection) ?? new Set()
        byConnection.set(connection, set.add(room))
      },
      remove: (connection, room) => void byConnection.get(connection)?.delete(room),
      take: (connection) => {
        const set = byConnection.get(connection)
        byConnection.delete(connection)
        return set === undefined ? [] : [...set]
      }
    })
  })
}

/**
 * The chat channel. The upgrade ran the session middleware, so every handler reads `CurrentUser`;
 * joining a room (and reading or posting to it) asks `Rooms.refusal`.
 */
export const chatRoute = Channel.route(chat, "/chat", {
  onMessage: (message, connection) =>
    Effect.gen(function* () {
      const user = yield* CurrentUser
      const refused = Rooms.refusal(user, message.room)
      const entered = yield* EnteredRooms
      switch (message._tag) {
        case "Say": {
          if (refused !== undefined) return yield* connection.send({ _tag: "Notice", text: refused })
          const text = message.text.trim()
          if (text === "") return
          const at = yield* Clock.currentTimeMillis
          return yield* connection.publish("room", message.room, {
            userId: user.id,
            name: user.name,
            text,
            at
          })
        }
        case "Entered":
          // Nobody is told about a room the user may not be in.
          if (refused !== undefined) return
          entered.add(connection.id, message.room)
          return yield* connection.broadcast({ _tag: "PresenceChanged", room: message.room })
        case "Left":
          if (refused !== undefined) return
          entered.remove(connection.id, message.room)
          return yield* connection.broadcast({ _tag: "PresenceChanged", room: message.room })
      }
    }),
  join: {
    room: (room) =>
      Effect.gen(function* () {
        const user = yield* CurrentUser
        const refused = Rooms.refusal(user, room)
        if (refused !== undefined) return yield* new Channel.Denied({ reason: refused })
        return { userId: user.id, name: user.name }
      })
  },
  requests: {
    history: ({ room, limit }) =>
      Effect.gen(function* () {
        const user = yield* CurrentUser
        const refused = Rooms.refusal(user, room)
        if (refused !== undefined)
          return yield* Effect.fail({ _tag: "HistoryRefused" as const, reason: refused })
        return yield* Rooms.recent(room, limit)
      })
  },
  onClose: (connection) =>
    Effect.gen(function* () {
      const left = (yield* EnteredRooms).take(connection.id)
      yield* Effect.forEach(left, (room) => connection.broadcast({ _tag: "PresenceChanged", room }), {
        discard: true
      }).pipe(Effect.ignore)
    })
})

const health = Route.get("/health", HttpServerResponse.text("ok"))

const { "upgrade-insecure-requests": _upgrade, ...baseCsp } = SecurityHeaders.defaultCsp

/**
 * The CSP of every response: scripts only from this server (plus the import map, by its hash),
 * styles only from its stylesheet, and connections (the WebSocket included) only to it.
 */
export const csp: Readonly<Record<string, ReadonlyArray<string>>> = {
  ...baseCsp,
  "script-src": ["'self'", Assets.importMapHash],
  "style-src": ["'self'"],
  "connect-src": ["'self'"]
}

/** Options of the app. */
export interface AppOptions {
  /** Keys that sign the session cookie, newest first. */
  readonly keys: ReadonlyArray<Redacted.Redacted<string>>
  /** Secure cookies (https only); off for the demo on http://127.0.0.1. */
  readonly secureCookies: boolean
}

/** The whole app. */
export const makeApp = (options: AppOptions) => {
  const sessions = session(options.keys, options.secureCookies)
  return Router.make([
    health,
    Assets.routes,
    Router.group("", [
      pages(sessions),
      // The upgrade runs the pages' session: the browser sends its cookie with the handshake.
      Router.group("/ws", [chatRoute]).pipe(Router.use(sameOriginUpgrade, sessions, sessionUser))
    ]).pipe(Router.use(Logger.middleware()))
  ]).pipe(
    Router.use(
      RequestId.middleware(),
      SecurityHeaders.middleware({
        // The demo runs on plain http://127.0.0.1: no HSTS, and no upgrading of its requests.
        strictTransportSecurity: false,
        contentSecurityPolicy: csp,
        // Not the default `no-referrer`: under it browsers send `Origin: null` with the page's own
        // form posts, and the CSRF origin check refuses the login.
        referrerPolicy: "same-origin"
      })
    )
  )
}

/** Where the app keeps its state. */
export interface StoreOptions {
  /** Sessions and room histories in SQLite files here (made if missing). */
  readonly dataDir: string
  /** Sessions and fan-out (histories, presence) in this Redis instead, shared by several processes. */
  readonly redisUrl?: string | undefined
  /** What the Redis keys start with (`strata:chat:`). */
  readonly redisPrefix?: string | undefined
}

/** The app's services: users, sessions, login rate limits, and the hub with its fan-out. */
export const services = (options: StoreOptions) => {
  mkdirSync(options.dataDir, { recursive: true })
  const redisUrl = options.redisUrl
  const prefix = options.redisPrefix ?? "strata:chat:"
  const pubsub =
    redisUrl === undefined
      ? PubSubSqlite.layer({ filename: join(options.dataDir, "chat.db") })
      : PubSubRedis.layerFromUrl(redisUrl, { prefix: `${prefix}ws:` })
  const sessions =
    redisUrl === undefined
      ? SessionSqlite.layer({ filename: join(options.dataDir, "sessions.db") })
      : SessionRedis.layerFromUrl(redisUrl, { prefix: `${prefix}session:` })
  return Layer.mergeAll(
    Users.layer,
    sessions,
    RateLimit.layerMemory(),
    EnteredRooms.layer,
    // The handlers read the fan-out too (a room's history), so it stays in the output.
    Hub.layerWith().pipe(Layer.provideMerge(pubsub))
  )
}

/**
 * The session keys: `fromEnv` (comma-separated, newest first) when given, else one made once and
 * kept in `dataDir`, so logins outlast a restart.
 */
export const sessionKeys = (
  dataDir: string,
  fromEnv?: string | undefined
): ReadonlyArray<Redacted.Redacted<string>> => {
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv.split(",").map((k) => Redacted.make(k.trim()))
  mkdirSync(dataDir, { recursive: true })
  const file = join(dataDir, "session.key")
  if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString("base64url"), { mode: 0o600 })
  return [Redacted.make(readFileSync(file, "utf8").trim())]
}

/** Options of the server. */
export interface ServerOptions extends StoreOptions {
  readonly port: number
  readonly host: string
  readonly keys: ReadonlyArray<Redacted.Redacted<string>>
  readonly secureCookies: boolean
}

/**
 * The app served on Node's HTTP server. When it stops, the channels drain first (1001 to every
 * client, which reconnects), then the HTTP server closes.
 */
export const server = (options: ServerOptions) =>
  App.serve(makeApp(options)).pipe(
    Hub.drainFirst,
    Layer.provide(services(options)),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: options.port, host: options.host }))
  )
