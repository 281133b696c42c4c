/**
 * Small middleware and services shared by the tests: a fake session, an auth that reads it, a role
 * guard, and an app-wide user repository.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import { HttpError, Middleware } from "../src/index.ts"

export interface User {
  readonly id: string
  readonly name: string
  readonly role: "admin" | "member"
}

export class Session extends Middleware.Service<Session, { readonly userId: string | undefined }>()(
  "test/Session"
) {}
export class CurrentUser extends Middleware.Service<CurrentUser, User>()("test/CurrentUser") {}
export class Admin extends Middleware.Service<Admin, User & { readonly role: "admin" }>()("test/Admin") {}

export class Users extends Context.Service<
  Users,
  { readonly find: (id: string) => Effect.Effect<User | undefined> }
>()("test/Users") {}

export const users: ReadonlyArray<User> = [
  { id: "1", name: "Ada", role: "admin" },
  { id: "2", name: "Bob", role: "member" }
]

export const UsersLive = Layer.succeed(Users, {
  find: (id: string) => Effect.succeed(users.find((u) => u.id === id))
})

/** Reads the user id from a `sid` cookie, the way a real session reads its store. */
export const session = Middleware.make({
  name: "session",
  provides: [Session],
  apply: (next) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      Effect.provideService(next, Session, { userId: request.cookies["sid"] })
    )
})

/** Loads the session's user; 401 without one. */
export const auth = Middleware.make({
  name: "auth",
  provides: [CurrentUser],
  requires: [Session],
  raises: ["Unauthorized"],
  apply: (next) =>
    Effect.gen(function* () {
      const { userId } = yield* Session
      const repo = yield* Users
      const user = userId === undefined ? undefined : yield* repo.find(userId)
      if (user === undefined) return yield* new HttpError.Unauthorized({ challenge: 'Cookie realm="test"' })
      return yield* Effect.provideService(next, CurrentUser, user)
    })
})

/** Reads a bearer token `token-<id>`. */
export const bearer = Middleware.make({
  name: "bearer",
  provides: [CurrentUser],
  raises: ["Unauthorized"],
  apply: (next) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const header = request.headers["authorization"] ?? ""
      const match = /^Bearer token-(\w+)$/.exec(header)
      const repo = yield* Users
      const user = match === null ? undefined : yield* repo.find(match[1]!)
      if (user === undefined) return yield* new HttpError.Unauthorized({ challenge: 'Bearer realm="test"' })
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
      : Effect.fail(new HttpError.Forbidden({ reason: `role ${user.role}` }))
})
