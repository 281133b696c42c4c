/**
 * Type tests of the authentication middleware (must compile / must not compile).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Auth from "../src/Auth.ts"
import { App, HttpError, Middleware, Route, Router, Session } from "../src/index.ts"
import { CurrentUser, type User, Users, UsersLive } from "../test/fixtures.ts"

const me = Route.get(
  "/me",
  Effect.map(CurrentUser, (user) => HttpServerResponse.jsonUnsafe(user))
)
const findUser = (id: string) => Effect.flatMap(Users, (users) => users.find(id))

const bearer = Auth.bearer({
  provides: CurrentUser,
  realm: "api",
  verify: (token) => findUser(Redacted.value(token))
})

// A handler reading CurrentUser serves behind Auth.bearer…
App.layer(Router.make([me]).pipe(Router.use(bearer)))
App.toWebHandler(Router.make([me]).pipe(Router.use(bearer)), UsersLive)
// @ts-expect-error …and not without it: CurrentUser is read but no middleware provides it
App.layer(Router.make([me]))
// @ts-expect-error verify's app services (Users) must be given to the app
App.toWebHandler(Router.make([me]).pipe(Router.use(bearer)), Layer.empty)

// verify must return the user type the service declares.
Auth.basic({ provides: CurrentUser, realm: "r", verify: () => Effect.succeed(undefined) })
Auth.basic({
  provides: CurrentUser,
  realm: "r",
  // @ts-expect-error a user without name and role is not a CurrentUser
  verify: () => Effect.succeed({ id: "1" })
})

// The errors of verify must be listed in raises, so the manifest cannot lie.
class UsersDown extends HttpError.Class("UsersDown", { status: 503 })<{}> {}
const listed = Auth.apiKey({
  provides: CurrentUser,
  in: "header",
  name: "x-api-key",
  raises: ["UsersDown"],
  verify: () => Effect.fail(new UsersDown())
})
Router.make([me]).pipe(Router.use(listed))
// @ts-expect-error raises must list UsersDown
const _unlisted: Middleware.Any = Auth.apiKey({
  provides: CurrentUser,
  in: "header",
  name: "x-api-key",
  verify: () => Effect.fail(new UsersDown())
})
// @ts-expect-error the key travels in a header, a query parameter or a cookie, nowhere else
Auth.apiKey({ provides: CurrentUser, in: "body", name: "key", verify: Auth.apiKeyTable({}) })

// Auth.sessionUser requires the session: it must run inside Session.middleware.
class AppSession extends Session.Service<AppSession>()("typetest/AppSession", {
  schema: Schema.Struct({ userId: Schema.optional(Schema.String), visits: Schema.optional(Schema.Number) })
}) {}
const session = Session.middleware(AppSession, { cookie: { keys: Redacted.make("k".repeat(32)) } })
const fromSession = Auth.sessionUser({
  provides: CurrentUser,
  session: AppSession,
  key: "userId",
  load: findUser
})
App.layer(Router.make([me]).pipe(Router.use(session, fromSession)))
// @ts-expect-error AppSession is required by a middleware that runs before the one that provides it
Router.make([me]).pipe(Router.use(fromSession, session))
// @ts-expect-error without the session middleware at all, AppSession is missing at serve
App.layer(Router.make([me]).pipe(Router.use(fromSession)))
// @ts-expect-error the key must be a key of the session data
Auth.sessionUser({ provides: CurrentUser, session: AppSession, key: "user", load: findUser })
// @ts-expect-error load gets the type stored under the key (visits is a number)
Auth.sessionUser({ provides: CurrentUser, session: AppSession, key: "visits", load: findUser })

// Request-scoped services verify reads must be listed in requires (and run after their provider).
const userOfSession = () =>
  Effect.flatMap(AppSession, (s) => Effect.flatMap(s.get("userId"), (id) => findUser(id ?? "")))
const readsSession = Auth.bearer({
  provides: CurrentUser,
  realm: "api",
  requires: [AppSession],
  verify: userOfSession
})
App.layer(Router.make([me]).pipe(Router.use(session, readsSession)))
// @ts-expect-error requires must list AppSession
const _unlistedService: Middleware.Any = Auth.bearer({
  provides: CurrentUser,
  realm: "api",
  verify: userOfSession
})

// Auth.jwt: algorithms is a required allowlist, matched to the kind of key.
const Claims = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  role: Schema.Literals(["admin", "member"])
})
const secret = Redacted.make("s".repeat(32))
const jwt = Auth.jwt({ provides: CurrentUser, secret, algorithms: ["HS256"], decode: Claims })
App.layer(Router.make([me]).pipe(Router.use(jwt)))
Auth.jwt({
  provides: CurrentUser,
  jwks: { url: "https://issuer.test/jwks" },
  algorithms: ["RS256", "ES256"],
  decode: Claims
})
// @ts-expect-error algorithms is required
Auth.jwt({ provides: CurrentUser, secret, decode: Claims })
// @ts-expect-error and not empty
Auth.jwt({ provides: CurrentUser, secret, algorithms: [], decode: Claims })
// @ts-expect-error "none" is no algorithm
Auth.jwt({ provides: CurrentUser, secret, algorithms: ["none"], decode: Claims })
// @ts-expect-error a secret goes with HMAC algorithms only (no algorithm confusion)
Auth.jwt({ provides: CurrentUser, secret, algorithms: ["RS256"], decode: Claims })
// @ts-expect-error a key set goes with public-key algorithms only
Auth.jwt({ provides: CurrentUser, jwks: { keys: [] }, algorithms: ["HS256"], decode: Claims })
// @ts-expect-error one key source, not both
Auth.jwt({ provides: CurrentUser, secret, jwks: { keys: [] }, algorithms: ["HS256"], decode: Claims })
// the decode schema must produce the user type…
Auth.jwt({
  provides: CurrentUser,
  secret,
  algorithms: ["HS256"],
  // @ts-expect-error …and this one has no role
  decode: Schema.Struct({ id: Schema.String, name: Schema.String })
})
// a schema producing a subtype of the user is fine
Auth.jwt({
  provides: CurrentUser,
  secret,
  algorithms: ["HS256"],
  decode: Schema.Struct({
    id: Schema.String,
    name: Schema.String,
    role: Schema.Literal("admin"),
    extra: Schema.Number
  })
})

// oneOf over the three provides CurrentUser; it needs the session like sessionUser does.
const anyUser = Middleware.oneOf({ bearer, jwt, session: fromSession })
App.layer(Router.make([me]).pipe(Router.use(session, anyUser)))
// @ts-expect-error AppSession is required by a middleware that runs before the one that provides it
Router.make([me]).pipe(Router.use(anyUser, session))

export type _User = User
