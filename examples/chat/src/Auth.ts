/**
 * The example's authentication: a cookie session (SQLite or Redis store) holding the user id, the
 * `CurrentUser` it loads for the pages and for the WebSocket upgrade, and a same-origin check for
 * the upgrade, which browsers send with cookies but without CSRF protection.
 */
import * as Effect from "effect/Effect"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import { Auth, HttpError, Middleware, Session } from "@strata/core"
import { type User, Users } from "./Users.ts"

/** The user of the request, loaded from the session. */
export class CurrentUser extends Middleware.Service<CurrentUser, User>()("example-chat/CurrentUser") {}

/** The session: who is logged in, and a flash message for the next page. */
export class AppSession extends Session.Service<AppSession>()("example-chat/Session", {
  schema: Schema.Struct({ userId: Schema.optional(Schema.String), flash: Schema.optional(Schema.String) })
}) {}

/** The session middleware; `secure` cookies need https (off for the demo on http://127.0.0.1). */
export const session = (keys: ReadonlyArray<Redacted.Redacted<string>>, secure: boolean) =>
  Session.middleware(AppSession, {
    cookie: { keys, secure },
    idleTimeout: "12 hours",
    absoluteTimeout: "7 days"
  })

/** The logged-in user, or 401. */
export const sessionUser = Auth.sessionUser({
  provides: CurrentUser,
  session: AppSession,
  key: "userId",
  load: (id) => Effect.flatMap(Users, (users) => users.find(id))
})

const isSameOrigin = (origin: string, host: string | undefined): boolean =>
  host !== undefined && URL.canParse(origin) && new URL(origin).host === host.toLowerCase()

/**
 * Refuses (403) a WebSocket upgrade that a page of another origin started. A handshake is a GET,
 * so CSRF middleware let it pass, and the SameSite=Lax cookie still comes along from a page of the
 * same site on another port or subdomain. Browsers always send `Origin` on a WebSocket handshake;
 * a client that sends none (the Node client) is no browser another page could drive.
 */
export const sameOriginUpgrade = Middleware.make({
  name: "same-origin-upgrade",
  raises: ["Forbidden"],
  apply: (next) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const origin = request.headers["origin"]
      if (origin !== undefined && !isSameOrigin(origin, request.headers["host"])) {
        return yield* new HttpError.Forbidden({ reason: `WebSocket upgrade from ${origin}` })
      }
      return yield* next
    })
})
