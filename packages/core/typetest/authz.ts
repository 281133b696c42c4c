/**
 * Type tests of the authorization guards (must compile / must not compile).
 */
import * as Effect from "effect/Effect"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, Authz, Route, Router } from "../src/index.ts"
import { auth, CurrentUser, session } from "../test/fixtures.ts"

const admin = Authz.requireRole({ user: CurrentUser, role: "admin", roles: (u) => [u.role] })
const member = Authz.requireRole({ user: CurrentUser, role: "member", roles: (u) => [u.role] })
const adminOnly = Route.get("/", Effect.as(Authz.Authorized("admin"), HttpServerResponse.text("ok")))

// A handler demanding Authorized<"admin"> compiles behind the admin guard…
App.layer(Router.make([adminOnly]).pipe(Router.use(session, auth, admin)))
// @ts-expect-error …and not behind a weaker guard
App.layer(Router.make([adminOnly]).pipe(Router.use(session, auth, member)))
// @ts-expect-error …nor behind authentication alone
App.layer(Router.make([adminOnly]).pipe(Router.use(session, auth)))
// @ts-expect-error a guard needs the user first: CurrentUser is provided by auth, which runs later
Router.make([adminOnly]).pipe(Router.use(admin, session, auth))

// Proofs of different tags are different services.
export const _proof: Authz.Authorized<"admin"> extends Authz.Authorized<"member"> ? true : false = false
