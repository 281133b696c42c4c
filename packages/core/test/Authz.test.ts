import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { App, Authz, Route, Router } from "../src/index.ts"
import { auth, CurrentUser, session, UsersLive } from "./fixtures.ts"

const admin = Authz.requireRole({ user: CurrentUser, role: "admin", roles: (u) => [u.role] })
const canWrite = Authz.requirePermission({
  user: CurrentUser,
  permission: "notes:write",
  permissions: (u) => (u.role === "admin" ? ["notes:write", "notes:read"] : ["notes:read"])
})
const self = Authz.policy({
  name: "self",
  user: CurrentUser,
  check: (user) => Effect.map(HttpRouter.params, (params) => params["id"] === user.id)
})

const ok = (tag: string) => HttpServerResponse.text(tag)

const app = Router.make([
  Router.group("/admin", [
    Route.get(
      "/",
      Effect.map(Authz.Authorized("admin"), (g) => ok(`${g.kind}:${g.tag}`))
    )
  ]).pipe(Router.use(admin)),
  Router.group("/notes", [Route.post("/", Effect.as(Authz.Authorized("notes:write"), ok("written")))]).pipe(
    Router.use(canWrite)
  ),
  Router.group("/users/:id", [Route.get("/", Effect.as(Authz.Authorized("self"), ok("yours")))]).pipe(
    Router.use(self)
  )
]).pipe(Router.use(session, auth))

const { handler } = App.toWebHandler(app, UsersLive)
const as = (id: string) => ({ headers: { cookie: `sid=${id}` } })

describe("Authz", () => {
  it("requireRole provides Authorized<role> to admins and answers 403 to others", async () => {
    const yes = await handler(new Request("http://x/admin", as("1")))
    expect([yes.status, await yes.text()]).toEqual([200, "role:admin"])
    const no = await handler(new Request("http://x/admin", as("2")))
    expect(no.status).toBe(403)
    expect(await no.json()).toEqual({ error: "Forbidden", message: "Forbidden" })
  })

  it("requirePermission checks the user's permissions", async () => {
    expect((await handler(new Request("http://x/notes", { method: "POST", ...as("1") }))).status).toBe(200)
    expect((await handler(new Request("http://x/notes", { method: "POST", ...as("2") }))).status).toBe(403)
  })

  it("a policy can read the path: only the user named in :id passes", async () => {
    expect((await handler(new Request("http://x/users/2", as("2")))).status).toBe(200)
    expect((await handler(new Request("http://x/users/1", as("2")))).status).toBe(403)
  })

  it("authentication runs first: no user is 401, not 403", async () => {
    expect((await handler(new Request("http://x/admin"))).status).toBe(401)
  })

  it("appears in the manifest as a guard that needs the user", () => {
    const route = Router.manifest(app).find((r) => r.path === "/admin")!
    expect(route.middleware.map((m) => m.name)).toEqual(["session", "auth", "role:admin"])
    expect(route.provides).toContain("@strata/core/Authorized/admin")
  })
})
