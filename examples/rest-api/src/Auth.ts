/**
 * The example's authentication and authorization: a cookie session (SQLite store in the demo),
 * login with a password, bearer tokens for API clients, either one on `/api/me`, and an admin guard.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Redacted from "effect/Redacted"
import { Auth, Authz, Middleware, Session } from "@strata/core"
import { type User, Users } from "./Users.ts"

/** The user making the request. */
export class CurrentUser extends Middleware.Service<CurrentUser, User>()("example/CurrentUser") {}

/** The session: who is logged in, and a flash message for the next page. */
export class AppSession extends Session.Service<AppSession>()("example/Session", {
  schema: Schema.Struct({ userId: Schema.optional(Schema.String), flash: Schema.optional(Schema.String) })
}) {}

export const session = (keys: ReadonlyArray<Redacted.Redacted<string>>) =>
  Session.middleware(AppSession, {
    cookie: { keys, secure: process.env["NODE_ENV"] === "production" },
    idleTimeout: "2 hours",
    absoluteTimeout: "1 day"
  })

/** Demo API tokens; printed by the demo so they can be tried with curl. */
export const demoTokens: Readonly<Record<string, string>> = { "alice-token": "alice", "bob-token": "bob" }

export const bearer = Auth.bearer({
  provides: CurrentUser,
  realm: "notes",
  verify: (token) =>
    Effect.gen(function* () {
      const id = Object.entries(demoTokens).find(([t]) => Auth.constantTimeEqual(t, token))?.[1]
      return id === undefined ? undefined : yield* (yield* Users).find(id)
    })
})

export const sessionUser = Auth.sessionUser({
  provides: CurrentUser,
  session: AppSession,
  key: "userId",
  load: (id) => Effect.flatMap(Users, (users) => users.find(id))
})

/** Either a bearer token or a logged-in session. */
export const anyUser = Middleware.oneOf({ bearer, session: sessionUser })

export const admin = Authz.requireRole({ user: CurrentUser, role: "admin", roles: (u) => [u.role] })
