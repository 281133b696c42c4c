/**
 * Type tests of CSRF protection (must compile / must not compile).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, Middleware, Route, Router, Session } from "../src/index.ts"
import * as Csrf from "../src/Csrf.ts"

class AppSession extends Session.Service<AppSession>()("typetest/AppSession", {
  schema: Schema.Struct({ userId: Schema.optional(Schema.String) })
}) {}

const keys = [Redacted.make("k1-0123456789abcdef0123456789abcdef")]
const session = Session.middleware(AppSession, { cookie: { keys } })
const synchronizer = Csrf.synchronizer({ session: AppSession })
const doubleSubmit = Csrf.doubleSubmit({ keys })
const form = Route.get(
  "/form",
  Effect.map(Csrf.token, (token) => HttpServerResponse.html(Csrf.hiddenInput(token)))
)

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false

// What each middleware declares: it provides Token, raises CsrfError (and the body read errors)
// and the synchronizer requires the session.
export const _provides: Equals<Middleware.Middleware.Provides<typeof synchronizer>, Csrf.Token> = true
export const _requires: Equals<Middleware.Middleware.Requires<typeof synchronizer>, AppSession> = true
export const _raises: Equals<
  Middleware.Middleware.Error<typeof doubleSubmit>["_tag"],
  "CsrfError" | "HttpServerError" | "MultipartError"
> = true
// @ts-expect-error the double-submit cookie needs no session
export const _noSession: Equals<Middleware.Middleware.Requires<typeof doubleSubmit>, AppSession> = true

// A handler reading Csrf.Token compiles behind either middleware…
App.layer(Router.make([form]).pipe(Router.use(session, synchronizer)))
App.layer(Router.make([form]).pipe(Router.use(doubleSubmit)))
// @ts-expect-error …and not without one: Token is read by a route, but no middleware provides it
App.layer(Router.make([form]))
// @ts-expect-error …nor with the session alone
App.layer(Router.make([form]).pipe(Router.use(session)))
// @ts-expect-error …nor with an app-wide layer standing in for the middleware
App.toWebHandler(Router.make([form]), Layer.succeed(Csrf.Token, { value: "stub" }))

// The synchronizer reads the session, so it must run after the session middleware.
Router.make([form]).pipe(Router.use(session), Router.use(synchronizer))
// @ts-expect-error AppSession is required by a middleware that runs before the one that provides it
Router.make([form]).pipe(Router.use(synchronizer, session))
// @ts-expect-error in separate `use` calls as well
Router.make([form]).pipe(Router.use(synchronizer), Router.use(session))
// @ts-expect-error and in a stack
export const _misordered: Middleware.Any = Middleware.stack(synchronizer, session)
export const _ordered: Middleware.Any = Middleware.stack(session, synchronizer)

// The session option must be a session service, not any request-scoped service.
class NotASession extends Middleware.Service<NotASession, { readonly id: string }>()(
  "typetest/NotASession"
) {}
// @ts-expect-error NotASession has no session schema or handle
Csrf.synchronizer({ session: NotASession })

// The reason is a closed union.
// @ts-expect-error "expired" is not a reason
export const _reason = new Csrf.CsrfError({ reason: "expired" })
