/**
 * Type tests of rate limiting (must compile / must not compile): a limiter keyed by a request-scoped
 * service requires it, so it must run after the middleware that provides it.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, Middleware, Route, Router } from "../src/index.ts"
import * as RateLimit from "../src/RateLimit.ts"
import { auth, CurrentUser, session, Users, UsersLive } from "../test/fixtures.ts"

const hello = Route.get("/", HttpServerResponse.text("hello"))
const perUser = RateLimit.middleware({
  limit: 100,
  window: "1 minute",
  key: RateLimit.byService(CurrentUser, (user) => user.id)
})

// 1. Keyed by the user: compiles after auth…
App.layer(Router.make([hello]).pipe(Router.use(session, auth, perUser)))
Router.make([hello]).pipe(Router.use(session, auth), Router.use(perUser))
Middleware.stack(session, auth, perUser)
// @ts-expect-error …not before it: CurrentUser is required by a middleware that runs before auth provides it
Router.make([hello]).pipe(Router.use(perUser, session, auth))
// @ts-expect-error …nor in an earlier `use`
Router.make([hello]).pipe(Router.use(perUser), Router.use(session, auth))
// @ts-expect-error …nor in a stack
const _misordered: Middleware.Any = Middleware.stack(perUser, session, auth)
// @ts-expect-error …nor without auth at all: CurrentUser is read, but nothing on the path provides it
App.layer(Router.make([hello]).pipe(Router.use(perUser)))

// 2. Keyed by IP (the default): needs nothing from other middleware.
App.layer(Router.make([hello]).pipe(Router.use(RateLimit.middleware({ limit: 10, window: "1 second" }))))

// 3. The store comes from the app's layer, and must.
{
  const app = Router.make([hello]).pipe(Router.use(session, auth, perUser))
  App.toWebHandler(app, Layer.mergeAll(UsersLive, RateLimit.layerMemory()))
  // @ts-expect-error no store
  App.toWebHandler(app, UsersLive)
}

// 4. A custom key names the request-scoped services it reads.
{
  const byName = RateLimit.byEffect(() => Effect.map(CurrentUser, (u) => u.name), {
    requires: [CurrentUser]
  })
  App.layer(
    Router.make([hello]).pipe(
      Router.use(session, auth, RateLimit.middleware({ limit: 1, window: "1 second", key: byName }))
    )
  )
  // @ts-expect-error requires must list test/CurrentUser, which the key reads
  const undeclared: RateLimit.Key<CurrentUser> = RateLimit.byEffect(() =>
    Effect.map(CurrentUser, (u) => u.name)
  )
  void undeclared
  // A plain function key may not read a request-scoped service: the manifest could not name it.
  // @ts-expect-error the key reads test/CurrentUser: use RateLimit.byService or RateLimit.byEffect(f, { requires })
  const _plain: Middleware.Any = RateLimit.middleware({
    limit: 1,
    window: "1 second",
    key: () => Effect.map(CurrentUser, (u) => u.id)
  })
  // A plain function may read app services (not request-scoped): they become the app layer's needs.
  const byRepo = RateLimit.middleware({
    limit: 1,
    window: "1 second",
    key: (request) =>
      Effect.flatMap(Users, (users) => Effect.map(users.find(request.url), (u) => u?.id ?? "anonymous"))
  })
  App.toWebHandler(
    Router.make([hello]).pipe(Router.use(byRepo)),
    Layer.mergeAll(UsersLive, RateLimit.layerMemory())
  )
  // @ts-expect-error and the app layer must give them
  App.toWebHandler(Router.make([hello]).pipe(Router.use(byRepo)), RateLimit.layerMemory())
}

// 5. The errors it raises follow onStoreError.
{
  type ErrorsOf<M> = M extends Middleware.Middleware<any, any, infer X, any, any, any> ? X : never
  const open = RateLimit.middleware({ limit: 1, window: "1 second" })
  const closed = RateLimit.middleware({ limit: 1, window: "1 second", onStoreError: "fail-closed" })
  const _open: "RateLimited" = null as unknown as ErrorsOf<typeof open>["_tag"]
  const _closed: "RateLimited" | "ServiceUnavailable" = null as unknown as ErrorsOf<typeof closed>["_tag"]
  // @ts-expect-error fail-open never answers 503
  const _openNot503: "ServiceUnavailable" = null as unknown as ErrorsOf<typeof open>["_tag"]
}
