/**
 * Type tests of the middleware model: each rule has a case that must compile and one that must not
 * (`@ts-expect-error`). Run by `tsc -p tsconfig.typetest.json`.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, HttpError, Logger, Middleware, RequestId, Route, Router } from "../src/index.ts"
import {
  Admin,
  admin,
  auth,
  bearer,
  CurrentUser,
  Session,
  session,
  Users,
  UsersLive
} from "../test/fixtures.ts"

const ok = HttpServerResponse.text("ok")
const me = Route.get("/me", Effect.as(CurrentUser, ok))
const adminPage = Route.get("/admin", Effect.as(Admin, ok))
const health = Route.get("/health", ok)

// 1. A handler gets a request-scoped service only if a middleware on its route provides it.
{
  const provided = Router.group("/api", [me]).pipe(Router.use(session, auth))
  App.layer(provided)

  const unprovided = Router.group("/api", [me])
  // @ts-expect-error CurrentUser is read by a route, but no middleware on its path provides it
  App.layer(unprovided)
}

// 2. Requirements survive to serve: an app-wide stub cannot stand in for the middleware.
{
  const unprovided = Router.group("/api", [me])
  const stub = Layer.succeed(CurrentUser, { id: "0", name: "stub", role: "admin" })
  // @ts-expect-error the check runs before any layer can be provided
  App.layer(unprovided).pipe(Layer.provide(stub))
  // @ts-expect-error nor can it be given to the test handler
  App.toWebHandler(unprovided, Layer.mergeAll(stub, UsersLive))
  // An app service (not request-scoped) is what the layer is for:
  App.toWebHandler(Router.group("/api", [me]).pipe(Router.use(session, auth)), UsersLive)
  // @ts-expect-error and the layer must give it
  App.toWebHandler(Router.group("/api", [me]).pipe(Router.use(session, auth)), Layer.empty)
}

// 3. Order as a type.
{
  Router.group("/api", [me]).pipe(Router.use(session, auth))
  // @ts-expect-error Session is required by a middleware that runs before the one that provides it
  Router.group("/api", [me]).pipe(Router.use(auth, session))
  // in separate `use` calls, written order is run order as well
  Router.group("/api", [me]).pipe(Router.use(session), Router.use(auth))
  // @ts-expect-error auth written first runs first, before Session exists
  Router.group("/api", [me]).pipe(Router.use(auth), Router.use(session))
  Middleware.stack(RequestId.middleware(), Logger.middleware())
  // @ts-expect-error the logger requires RequestId
  const _misordered: Middleware.Any = Middleware.stack(Logger.middleware(), RequestId.middleware())
}

// 4. Every error has a response.
{
  class Plain extends Error {
    readonly _tag = "Plain"
  }
  class Mapped extends HttpError.Class("Mapped", { status: 409 })<{}> {}
  const failing = Route.get("/fail", Effect.fail(new Plain()))
  const mapped = Route.get("/mapped", Effect.fail(new Mapped()))
  App.layer(Router.make([mapped]))
  // @ts-expect-error Plain can reach the client unmapped
  App.layer(Router.make([failing]))
  // one call maps it, with the error's type inferred
  App.layer(
    Router.make([failing]).pipe(
      Router.catchTags({ Plain: (e) => HttpServerResponse.text(e._tag, { status: 422 }) })
    )
  )
  // @ts-expect-error a tag the routes cannot raise
  Router.make([failing]).pipe(Router.catchTags({ Other: () => ok }))
}

// 5. Refinement: Admin only behind the admin guard.
{
  App.layer(Router.group("/a", [adminPage]).pipe(Router.use(session, auth, admin)))
  // @ts-expect-error auth alone gives CurrentUser, not Admin
  App.layer(Router.group("/a", [adminPage]).pipe(Router.use(session, auth)))
  // oneOf provides what every alternative provides
  const anyUser = Middleware.oneOf({ bearer, session: auth })
  App.layer(Router.group("/a", [me]).pipe(Router.use(session, anyUser)))
  // @ts-expect-error ... and requires what any alternative requires (auth needs Session)
  App.layer(Router.group("/a", [me]).pipe(Router.use(anyUser)))
}

// 6. Router-level middleware reach only their routes.
{
  const api = Router.group("/api", [me]).pipe(Router.use(session, auth))
  App.layer(Router.make([api, health]))
  // @ts-expect-error a sibling router's middleware do not reach this route
  App.layer(Router.make([api, Router.group("/other", [me])]))
  // app-level middleware reach every route
  App.layer(Router.make([Router.group("/other", [me]), health]).pipe(Router.use(session, auth)))
}

// 7. Every route but an allowlist requires CurrentUser.
{
  const app = Router.make([Router.group("/api", [me]).pipe(Router.use(session, auth)), health])
  Router.requireEverywhere(app, CurrentUser, { except: ["GET /health"] })
  // @ts-expect-error GET /health runs no middleware that provides CurrentUser
  Router.requireEverywhere(app, CurrentUser)
}

// A middleware must provide what it declares and pass inner errors on.
{
  Middleware.make({
    name: "ok",
    provides: [Session],
    apply: (next) => Effect.provideService(next, Session, { userId: undefined })
  })
  // @ts-expect-error it declares Session but does not provide it
  const _a: Middleware.Any = Middleware.make({ name: "forgets", provides: [Session], apply: (next) => next })
  // @ts-expect-error it swallows every error of next
  const _b: Middleware.Any = Middleware.make({
    name: "swallows",
    apply: (next) => Effect.orElseSucceed(next, () => ok)
  })
}

export type _Users = Users

// `apply` may return a union of effects (a ternary) and the errors are inferred from every branch.
{
  const guard = Middleware.make({
    name: "guard",
    raises: ["Forbidden"],
    apply: (next) => (Math.random() > 2 ? Effect.fail(new HttpError.Forbidden({})) : next)
  })
  const _raises: Middleware.Middleware.Error<typeof guard> = new HttpError.Forbidden({})
  // @ts-expect-error it raises Forbidden, not Unauthorized
  const _not: Middleware.Middleware.Error<typeof guard> = new HttpError.Unauthorized({})
}

// The manifest cannot lie: `raises` and `requires` must be complete.
{
  Middleware.make({
    name: "listed",
    raises: ["Unauthorized"],
    requires: [Session],
    apply: (next) =>
      Effect.gen(function* () {
        if ((yield* Session).userId === undefined) return yield* new HttpError.Unauthorized({})
        return yield* next
      })
  }).pipe(Middleware.isMiddleware)
  // @ts-expect-error raises must list Unauthorized
  const _c: Middleware.Any = Middleware.make({
    name: "unlisted-error",
    requires: [Session],
    apply: (next) =>
      Effect.gen(function* () {
        if ((yield* Session).userId === undefined) return yield* new HttpError.Unauthorized({})
        return yield* next
      })
  })
  // @ts-expect-error requires must list Session
  const _d: Middleware.Any = Middleware.make({
    name: "unlisted-service",
    apply: (next) => Effect.flatMap(Session, () => next)
  })
}
