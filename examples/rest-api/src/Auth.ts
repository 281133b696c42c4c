/**
 * The example's authentication: a bearer token looked up in a fixed table, and an admin guard that
 * refines the user. It shows the model (provides / requires / refines); real schemes (sessions,
 * JWT, API keys) are `@strata/core` built-ins of their own.
 */
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import { HttpError, Middleware } from "@strata/core"

export interface User {
  readonly id: string
  readonly name: string
  readonly role: "admin" | "member"
}

/** The user making the request. */
export class CurrentUser extends Middleware.Service<CurrentUser, User>()("example/CurrentUser") {}

/** The user, once checked to be an admin. */
export class Admin extends Middleware.Service<Admin, User & { readonly role: "admin" }>()("example/Admin") {}

/** Demo tokens; printed by the demo so they can be tried with curl. */
export const demoTokens: Readonly<Record<string, User>> = {
  "alice-token": { id: "alice", name: "Alice", role: "admin" },
  "bob-token": { id: "bob", name: "Bob", role: "member" }
}

export const bearer = Middleware.make({
  name: "bearer",
  provides: [CurrentUser],
  raises: ["Unauthorized"],
  apply: (next) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const match = /^Bearer (\S+)$/.exec(request.headers["authorization"] ?? "")
      const user = match === null ? undefined : demoTokens[match[1]!]
      if (user === undefined) return yield* new HttpError.Unauthorized({ challenge: 'Bearer realm="notes"' })
      return yield* Effect.provideService(next, CurrentUser, user)
    })
})

export const admin = Middleware.refine({
  name: "admin",
  from: CurrentUser,
  to: Admin,
  raises: ["Forbidden"],
  check: (user) =>
    user.role === "admin"
      ? Effect.succeed({ ...user, role: "admin" as const })
      : Effect.fail(new HttpError.Forbidden({ reason: "not an admin" }))
})
